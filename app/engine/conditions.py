"""The condition language: structured, never raw query text. Every condition compiles two ways,
to a predicate over a user's state document and to a MongoDB filter over the stored documents,
so "is this user eligible" and "which users are eligible" always agree.

Both read the same layout (see state.py): `attributes.<name>`, `subscriptions.<channel>`,
`events.<name>.{count,first_at,last_at}`, `received.<template>.{count,last_at}`. Comparisons follow
MongoDB's rules: numbers compare with numbers, strings with strings, datetimes with datetimes,
and an operator on a missing field is false except `not_equals` and `exists: false`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from app.engine.durations import format_duration

Document = Mapping[str, Any]
MongoFilter = dict[str, Any]

COMPARISONS = {
    "equals": "$eq",
    "not_equals": "$ne",
    "gt": "$gt",
    "gte": "$gte",
    "lt": "$lt",
    "lte": "$lte",
}


def _lookup(document: Document, path: str) -> tuple[bool, Any]:
    value: Any = document
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False, None
        value = value[part]
    return True, value


def _kind(value: Any) -> str | None:
    """MongoDB's comparison classes for the values attributes can hold."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, datetime):
        return "date"
    if value is None:
        return "null"
    return None


def _compare(op: str, actual: Any, expected: Any) -> bool:
    if op == "$eq":
        return _kind(actual) == _kind(expected) and actual == expected
    kind = _kind(actual)
    if kind != _kind(expected) or kind in (None, "null"):
        return False
    return {"$gt": actual > expected, "$gte": actual >= expected,
            "$lt": actual < expected, "$lte": actual <= expected}[op]  # fmt: skip


def _candidates(actual: Any) -> list[Any]:
    """MongoDB matches an array field by its elements or by the whole array."""
    return [*actual, actual] if isinstance(actual, list) else [actual]


class Condition:
    def test(self, document: Document, now: datetime) -> bool:
        raise NotImplementedError

    def mongo(self, now: datetime) -> MongoFilter:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class FieldCompare(Condition):
    """`{attribute: plan, equals: pro}`; also gt/gte/lt/lte/not_equals/in/exists."""

    path: str
    op: str  # a MongoDB operator: $eq $ne $gt $gte $lt $lte $in $exists
    value: Any

    def test(self, document: Document, now: datetime) -> bool:
        found, actual = _lookup(document, self.path)
        if self.op == "$exists":
            return found is bool(self.value)
        if not found:
            # A missing field equals null, and is "not equal" to anything else.
            if self.op == "$in":
                return None in self.value
            return self.op == "$ne" or (self.op == "$eq" and self.value is None)
        candidates = _candidates(actual)
        if self.op == "$in":
            return any(_compare("$eq", c, v) for c in candidates for v in self.value)
        if self.op == "$ne":
            return not any(_compare("$eq", c, self.value) for c in candidates)
        return any(_compare(self.op, c, self.value) for c in candidates)

    def mongo(self, now: datetime) -> MongoFilter:
        return {self.path: {self.op: self.value}}

    def describe(self) -> str:
        return f"{self.path} {self.op} {self.value!r}"


@dataclass(frozen=True)
class TimeSince(Condition):
    """At least `at_least` ago: `happened_hours_ago("signed_up", 3)` of the ClassDojo write-up.
    `path` names a datetime field (an attribute, or an event's last time)."""

    path: str
    at_least: timedelta

    def test(self, document: Document, now: datetime) -> bool:
        found, actual = _lookup(document, self.path)
        return found and isinstance(actual, datetime) and actual <= now - self.at_least

    def mongo(self, now: datetime) -> MongoFilter:
        return {self.path: {"$lte": now - self.at_least}}

    def describe(self) -> str:
        return f"{self.path} at least {format_duration(self.at_least)} ago"


@dataclass(frozen=True)
class Within(Condition):
    """Within the last `window`: an event performed recently, a message received recently."""

    path: str
    window: timedelta

    def test(self, document: Document, now: datetime) -> bool:
        found, actual = _lookup(document, self.path)
        return found and isinstance(actual, datetime) and actual >= now - self.window

    def mongo(self, now: datetime) -> MongoFilter:
        return {self.path: {"$gte": now - self.window}}

    def describe(self) -> str:
        return f"{self.path} within the last {format_duration(self.window)}"


@dataclass(frozen=True)
class All(Condition):
    parts: tuple[Condition, ...]

    def test(self, document: Document, now: datetime) -> bool:
        return all(part.test(document, now) for part in self.parts)

    def mongo(self, now: datetime) -> MongoFilter:
        return {"$and": [part.mongo(now) for part in self.parts]} if self.parts else {}

    def describe(self) -> str:
        return "(" + " and ".join(part.describe() for part in self.parts) + ")"


@dataclass(frozen=True)
class Any_(Condition):
    parts: tuple[Condition, ...]

    def test(self, document: Document, now: datetime) -> bool:
        return any(part.test(document, now) for part in self.parts)

    def mongo(self, now: datetime) -> MongoFilter:
        # An empty `or` is false: $in with no values matches nothing.
        return (
            {"$or": [part.mongo(now) for part in self.parts]}
            if self.parts
            else {"_id": {"$in": []}}
        )

    def describe(self) -> str:
        return "(" + " or ".join(part.describe() for part in self.parts) + ")"


@dataclass(frozen=True)
class Not(Condition):
    part: Condition

    def test(self, document: Document, now: datetime) -> bool:
        return not self.part.test(document, now)

    def mongo(self, now: datetime) -> MongoFilter:
        return {"$nor": [self.part.mongo(now)]}

    def describe(self) -> str:
        return f"not {self.part.describe()}"


def event_count_at_least(event: str, count: int) -> Condition:
    return FieldCompare(f"events.{event}.count", "$gte", count)


def event_never(event: str) -> Condition:
    return FieldCompare(f"events.{event}.count", "$exists", False)


def received(template: str) -> Condition:
    return FieldCompare(f"received.{template}.count", "$gte", 1)


def subscribed(channel: str) -> Condition:
    """Users are subscribed unless an update said otherwise."""
    return FieldCompare(f"subscriptions.{channel}", "$ne", False)
