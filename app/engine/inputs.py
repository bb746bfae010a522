"""What the engine reacts to. Each input carries its own time, so replaying it gives the same
result whatever the wall clock says."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.engine.durations import format_duration

# Why a user's `timezone` is refused: the event applies, the user keeps their last valid zone.
ZONE_REFUSED = (
    "a time zone this machine does not know (the event was applied; the user keeps their "
    "last valid zone)"
)


def known_zone(name: str) -> bool:
    """Whether `name` is an IANA time zone in this machine's database."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


@dataclass(frozen=True)
class UserEvent:
    event_id: str
    user_id: str
    name: str
    at: datetime
    properties: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    subscriptions: dict[str, bool] = field(default_factory=dict)
    # Per-topic subscription state (e.g. {"product_updates": false}), beside the channels'.
    topics: dict[str, bool] = field(default_factory=dict)
    timezone: str | None = None
    locale: str | None = None
    # When the system got it (the workers: the Kafka record's timestamp), not part of the
    # record; None counts as received at its own time. See `EventTimePolicy`.
    received_at: datetime | None = None

    @property
    def input_id(self) -> str:
        return f"event:{self.event_id}"

    @classmethod
    def from_record(cls, record: dict[str, Any], received_at: datetime | None = None) -> UserEvent:
        """From a record valid against topics/user-events.json."""
        return cls(
            event_id=record["event_id"],
            user_id=record["user_id"],
            name=record["name"],
            at=datetime.fromisoformat(record["at"]),
            properties=dict(record.get("properties") or {}),
            attributes=dict(record.get("attributes") or {}),
            subscriptions=dict(record.get("subscriptions") or {}),
            topics=dict(record.get("topics") or {}),
            timezone=record.get("timezone"),
            locale=record.get("locale"),
            received_at=received_at,
        )


class EventTimeError(ValueError):
    """An event dated too far from when it was received to be believed."""


@dataclass(frozen=True)
class EventTimePolicy:
    """Which event times are believable: within [received - max_past, received + max_future],
    end points included. An event from another era (a client clock at 1970, a typo for 2999)
    would otherwise run a whole journey at once or sit in the future. The workers set the two
    limits from EVENT_MAX_PAST_SECONDS and EVENT_MAX_FUTURE_SECONDS."""

    max_past: timedelta = timedelta(days=7)
    max_future: timedelta = timedelta(minutes=5)

    def check(self, event: UserEvent) -> None:
        """Raises EventTimeError (naming times and settings, never the user) for an event out
        of bounds; an event without a receipt time counts as received at its own time."""
        received = event.received_at
        if received is None:
            return
        if event.at < received - self.max_past:
            skew, side = received - event.at, "before"
        elif event.at > received + self.max_future:
            skew, side = event.at - received, "after"
        else:
            return
        raise EventTimeError(
            f"event time {_text(event.at)} is {format_duration(skew)} {side} its receipt at "
            f"{_text(received)}; accepted are times from {format_duration(self.max_past)} before"
            f" to {format_duration(self.max_future)} after receipt (settings"
            f" EVENT_MAX_PAST_SECONDS={int(self.max_past.total_seconds())},"
            f" EVENT_MAX_FUTURE_SECONDS={int(self.max_future.total_seconds())})"
        )


def _text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class TimerFired:
    user_id: str
    timer_id: str
    due_at: datetime

    @property
    def input_id(self) -> str:
        return f"timer:{self.timer_id}"

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> TimerFired:
        """From a record of kind `timer` valid against topics/timers.json."""
        _expect_kind(record, "timer")
        return cls(
            user_id=record["user_id"],
            timer_id=record["timer_id"],
            due_at=datetime.fromisoformat(record["due_at"]),
        )


@dataclass(frozen=True)
class ScheduledEntry:
    """A recurring journey's cron tick, for one user of its audience."""

    user_id: str
    journey_id: str
    tick: datetime

    @property
    def input_id(self) -> str:
        return f"tick:{self.journey_id}:{self.tick.isoformat()}"

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ScheduledEntry:
        """From a record of kind `scheduled_entry` valid against topics/timers.json."""
        _expect_kind(record, "scheduled_entry")
        return cls(
            user_id=record["user_id"],
            journey_id=record["journey_id"],
            tick=datetime.fromisoformat(record["tick"]),
        )


def _expect_kind(record: Mapping[str, Any], kind: str) -> None:
    if record.get("kind") != kind:
        raise ValueError(
            f"found a record of kind {record.get('kind')!r}, expected a timers record of kind"
            f" {kind!r}"
        )


EngineInput = UserEvent | TimerFired | ScheduledEntry


def input_order(item: EngineInput) -> tuple[datetime, int]:
    """The order in which one user's inputs apply: by the time each reached Journeys (an event's
    receipt, else its `at`; a timer's due time; a tick), and at equal times events before timers
    and ticks, so an event at exactly a deadline is in time. Sort with it (sorting is stable) in
    the simulator and in the workers alike."""
    match item:
        case UserEvent():
            return item.received_at or item.at, 0
        case TimerFired():
            return item.due_at, 1
        case ScheduledEntry():
            return item.tick, 1
    raise TypeError(f"not an engine input: {item!r}")
