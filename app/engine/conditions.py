"""The condition language: structured, never raw query text. Every condition compiles two ways,
to a predicate over a user's state document and to a MongoDB filter over the stored documents,
so "is this user eligible" and "which users are eligible" always agree.

Both read the same layout (see state.py): `attributes.<name>`, `subscriptions.<channel>`,
`topics.<topic>`, `events.<name>.{count,first_at,last_at}`, `received.<template>.{count,last_at}`
and `changed.<name>` (when an update last changed the attribute). Comparisons follow MongoDB's
rules: numbers compare with numbers, strings with strings, datetimes with datetimes, and an
operator on a missing field is false except `not_equals` and `exists: false`.

`contains` and `prefix` match strings (an array field by its string elements, as MongoDB's
`$regex` does). A condition about the current entry (`since_entry`) is evaluated with the
entry's time, `entered_at`, given to both forms; it has no meaning outside an entry (an
audience is checked before entering).
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
    def test(self, document: Document, now: datetime, entered_at: datetime | None = None) -> bool:
        raise NotImplementedError

    def mongo(self, now: datetime, entered_at: datetime | None = None) -> MongoFilter:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    @property
    def needs_entry(self) -> bool:
        """Whether the condition reads the entry's time (`since_entry`)."""
        return False


@dataclass(frozen=True)
class FieldCompare(Condition):
    """`{attribute: plan, equals: pro}`; also gt/gte/lt/lte/not_equals/in/exists."""

    path: str
    op: str  # a MongoDB operator: $eq $ne $gt $gte $lt $lte $in $exists
    value: Any

    def test(self, document: Document, now: datetime, entered_at: datetime | None = None) -> bool:
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

    def mongo(self, now: datetime, entered_at: datetime | None = None) -> MongoFilter:
        return {self.path: {self.op: self.value}}

    def describe(self) -> str:
        return f"{self.path} {self.op} {self.value!r}"


@dataclass(frozen=True)
class TimeSince(Condition):
    """At least `at_least` ago: `happened_hours_ago("signed_up", 3)` of the ClassDojo write-up.
    `path` names a datetime field (an attribute, or an event's last time)."""

    path: str
    at_least: timedelta

    def test(self, document: Document, now: datetime, entered_at: datetime | None = None) -> bool:
        found, actual = _lookup(document, self.path)
        return found and isinstance(actual, datetime) and actual <= now - self.at_least

    def mongo(self, now: datetime, entered_at: datetime | None = None) -> MongoFilter:
        return {self.path: {"$lte": now - self.at_least}}

    def describe(self) -> str:
        return f"{self.path} at least {format_duration(self.at_least)} ago"


@dataclass(frozen=True)
class Within(Condition):
    """Within the last `window`: an event performed recently, a message received recently."""

    path: str
    window: timedelta

    def test(self, document: Document, now: datetime, entered_at: datetime | None = None) -> bool:
        found, actual = _lookup(document, self.path)
        return found and isinstance(actual, datetime) and actual >= now - self.window

    def mongo(self, now: datetime, entered_at: datetime | None = None) -> MongoFilter:
        return {self.path: {"$gte": now - self.window}}

    def describe(self) -> str:
        return f"{self.path} within the last {format_duration(self.window)}"


@dataclass(frozen=True)
class SinceEntry(Condition):
    """After the entry's time: an event performed since entering (`events.<name>.last_at`), an
    attribute changed since entering (`changed.<name>`). Strictly after, so the event (or the
    update) that made the user enter does not count."""

    path: str

    def test(self, document: Document, now: datetime, entered_at: datetime | None = None) -> bool:
        since = _entry_time(entered_at, self)
        found, actual = _lookup(document, self.path)
        return found and isinstance(actual, datetime) and actual > since

    def mongo(self, now: datetime, entered_at: datetime | None = None) -> MongoFilter:
        return {self.path: {"$gt": _entry_time(entered_at, self)}}

    def describe(self) -> str:
        return f"{self.path} since entering"

    @property
    def needs_entry(self) -> bool:
        return True


def _entry_time(entered_at: datetime | None, condition: Condition) -> datetime:
    if entered_at is None:
        raise ValueError(f"{condition.describe()}: evaluated outside an entry")
    return entered_at


REGEX_SPECIAL = frozenset("\\.^$|?*+()[]{}")


def _literal(text: str) -> str:
    """`text` as a regular expression matching itself, in the syntax MongoDB (PCRE) and
    FerretDB (Go's RE2) share."""
    return "".join(f"\\{ch}" if ch in REGEX_SPECIAL else ch for ch in text)


@dataclass(frozen=True)
class TextMatch(Condition):
    """`{contains: text}` (a substring) or `{prefix: text}` of a string field; an array field
    matches by any string element, and other values never match (as MongoDB's `$regex`)."""

    path: str
    text: str
    prefix: bool

    def test(self, document: Document, now: datetime, entered_at: datetime | None = None) -> bool:
        found, actual = _lookup(document, self.path)
        return found and any(
            isinstance(value, str)
            and (value.startswith(self.text) if self.prefix else self.text in value)
            for value in _candidates(actual)
        )

    def mongo(self, now: datetime, entered_at: datetime | None = None) -> MongoFilter:
        return {self.path: {"$regex": ("^" if self.prefix else "") + _literal(self.text)}}

    def describe(self) -> str:
        return f"{self.path} {'starts with' if self.prefix else 'contains'} {self.text!r}"


@dataclass(frozen=True)
class All(Condition):
    parts: tuple[Condition, ...]

    def test(self, document: Document, now: datetime, entered_at: datetime | None = None) -> bool:
        return all(part.test(document, now, entered_at) for part in self.parts)

    def mongo(self, now: datetime, entered_at: datetime | None = None) -> MongoFilter:
        return {"$and": [part.mongo(now, entered_at) for part in self.parts]} if self.parts else {}

    def describe(self) -> str:
        return "(" + " and ".join(part.describe() for part in self.parts) + ")"

    @property
    def needs_entry(self) -> bool:
        return any(part.needs_entry for part in self.parts)


@dataclass(frozen=True)
class Any_(Condition):
    parts: tuple[Condition, ...]

    def test(self, document: Document, now: datetime, entered_at: datetime | None = None) -> bool:
        return any(part.test(document, now, entered_at) for part in self.parts)

    def mongo(self, now: datetime, entered_at: datetime | None = None) -> MongoFilter:
        # An empty `or` is false: $in with no values matches nothing.
        return (
            {"$or": [part.mongo(now, entered_at) for part in self.parts]}
            if self.parts
            else {"_id": {"$in": []}}
        )

    def describe(self) -> str:
        return "(" + " or ".join(part.describe() for part in self.parts) + ")"

    @property
    def needs_entry(self) -> bool:
        return any(part.needs_entry for part in self.parts)


@dataclass(frozen=True)
class Not(Condition):
    part: Condition

    def test(self, document: Document, now: datetime, entered_at: datetime | None = None) -> bool:
        return not self.part.test(document, now, entered_at)

    def mongo(self, now: datetime, entered_at: datetime | None = None) -> MongoFilter:
        return {"$nor": [self.part.mongo(now, entered_at)]}

    def describe(self) -> str:
        return f"not {self.part.describe()}"

    @property
    def needs_entry(self) -> bool:
        return self.part.needs_entry


def event_count_at_least(event: str, count: int) -> Condition:
    return FieldCompare(f"events.{event}.count", "$gte", count)


def event_never(event: str) -> Condition:
    return FieldCompare(f"events.{event}.count", "$exists", False)


def received(template: str) -> Condition:
    return FieldCompare(f"received.{template}.count", "$gte", 1)


def subscribed(channel: str) -> Condition:
    """Users are subscribed unless an update said otherwise."""
    return FieldCompare(f"subscriptions.{channel}", "$ne", False)


def subscribed_topic(topic: str) -> Condition:
    """Users are subscribed to a topic unless an update (an unsubscribe) said otherwise."""
    return FieldCompare(f"topics.{topic}", "$ne", False)


PROPERTY_OPERATORS = (*COMPARISONS, "in", "exists", "contains", "prefix")


def field_operator(path: str, op: str, value: Any) -> Condition:
    """One operator of the condition language on a field: a comparison, `in`, `exists`,
    `contains` or `prefix`. The loader checks the value's type first."""
    if op in COMPARISONS:
        return FieldCompare(path, COMPARISONS[op], value)
    if op == "in":
        return FieldCompare(path, "$in", list(value))
    if op == "exists":
        return FieldCompare(path, "$exists", value)
    if op in ("contains", "prefix"):
        return TextMatch(path, value, prefix=op == "prefix")
    raise ValueError(f"not an operator: {op!r}")


def property_filter(wanted: Mapping[str, Any]) -> Condition:
    """An event's property filter, as a condition on `{"properties": ...}`: a plain value is
    `equals`, a one-key mapping names an operator (`{gte: 2}`, `{in: [a, b]}`, `{exists: true}`,
    `{contains: x}`, `{prefix: x}`). Its MongoFilter selects the same stored events."""
    parts = []
    for name, value in wanted.items():
        path = f"properties.{name}"
        if isinstance(value, Mapping):
            ((op, operand),) = value.items()
            parts.append(field_operator(path, op, operand))
        else:
            parts.append(FieldCompare(path, "$eq", value))
    return All(tuple(parts))
