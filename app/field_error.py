"""The error of a request body's field (an API request, a provider's callback): the API answers
it with a 400 naming `where` and `expected`."""

from __future__ import annotations


class FieldError(ValueError):
    """`where` is the field, `expected` what it should be."""

    def __init__(self, where: str, expected: str) -> None:
        super().__init__(f"{where}: expected {expected}")
        self.where = where
        self.expected = expected
