"""What the engine reacts to. Each input carries its own time, so replaying it gives the same
result whatever the wall clock says."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class UserEvent:
    event_id: str
    user_id: str
    name: str
    at: datetime
    properties: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    subscriptions: dict[str, bool] = field(default_factory=dict)
    timezone: str | None = None
    locale: str | None = None

    @property
    def input_id(self) -> str:
        return f"event:{self.event_id}"

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> UserEvent:
        """From a record valid against topics/user-events.json."""
        return cls(
            event_id=record["event_id"],
            user_id=record["user_id"],
            name=record["name"],
            at=datetime.fromisoformat(record["at"]),
            properties=dict(record.get("properties") or {}),
            attributes=dict(record.get("attributes") or {}),
            subscriptions=dict(record.get("subscriptions") or {}),
            timezone=record.get("timezone"),
            locale=record.get("locale"),
        )


@dataclass(frozen=True)
class TimerFired:
    user_id: str
    timer_id: str
    due_at: datetime

    @property
    def input_id(self) -> str:
        return f"timer:{self.timer_id}"


@dataclass(frozen=True)
class ScheduledEntry:
    """A recurring journey's cron tick, for one user of its audience."""

    user_id: str
    journey_id: str
    tick: datetime

    @property
    def input_id(self) -> str:
        return f"tick:{self.journey_id}:{self.tick.isoformat()}"


EngineInput = UserEvent | TimerFired | ScheduledEntry


def input_order(item: EngineInput) -> tuple[datetime, int]:
    """The order in which inputs apply: by their time (an event's `at`, a timer's due time, a
    tick), and at equal times events before timers and ticks, so an event at exactly a deadline
    is in time. Sort with it (sorting is stable) in the simulator and in the workers alike."""
    match item:
        case UserEvent():
            return item.at, 0
        case TimerFired():
            return item.due_at, 1
        case ScheduledEntry():
            return item.tick, 1
    raise TypeError(f"not an engine input: {item!r}")
