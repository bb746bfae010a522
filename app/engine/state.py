"""A user's state, after the write-up: per journey, per entry (its id from the entry time), the
next available steps with their due times, plus the attributes and the bounded event history the
conditions read. `to_document()` is what MongoDB stores (but for `sends` and `applied`, which
nothing queries: app.store.users packs each into one binary value), and what conditions and their
Mongo filters are written against."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

APPLIED_INPUTS_KEPT = 500  # ids of recent inputs, to recognise a redelivered one
SENDS_KEPT = 200  # recent sends, for frequency caps
# The decision of a document written when an entry kept a single `winner`: which step took it is
# not recorded, so it is kept under this key (never a step id) and claims the entry's old lock
# name, the one that entry's earlier sends claimed.
LEGACY_DECISION = "~"


@dataclass(frozen=True)
class PendingTimer:
    timer_id: str
    due_at: datetime
    journey_id: str
    entry_id: str
    step_id: str
    purpose: str  # delay | wait_timeout | path | quiet_hours | goal_window | paused
    path_id: str | None = None

    def to_document(self) -> dict[str, Any]:
        return {
            "timer_id": self.timer_id,
            "due_at": self.due_at,
            "journey_id": self.journey_id,
            "entry_id": self.entry_id,
            "step_id": self.step_id,
            "purpose": self.purpose,
            "path_id": self.path_id,
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> PendingTimer:
        return cls(**{**document, "due_at": _utc(document["due_at"])})


@dataclass
class EntryState:
    """One user's pass through one journey."""

    entry_id: str
    journey_id: str
    version: int
    entered_at: datetime
    holdout: bool = False
    waiting_for: str | None = None  # a wait_for step's id
    # decision step id (paths or split) -> the path or branch it chose; at most one each
    winners: dict[str, str] = field(default_factory=dict)
    goal_until: datetime | None = None
    converted: bool = False
    context: dict[str, Any] = field(default_factory=dict)  # the entry event's properties
    paused_since: datetime | None = None  # parked at a message of a paused version since

    def to_document(self) -> dict[str, Any]:
        return {
            "entry_id": self.entry_id,
            "journey_id": self.journey_id,
            "version": self.version,
            "entered_at": self.entered_at,
            "holdout": self.holdout,
            "waiting_for": self.waiting_for,
            "winners": self.winners,
            "goal_until": self.goal_until,
            "converted": self.converted,
            "context": self.context,
            "paused_since": self.paused_since,
        }

    def copy(self) -> EntryState:
        """A copy the engine may change: `winners` is changed in place, `context` never."""
        return replace(self, winners=dict(self.winners))

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> EntryState:
        values = dict(document)
        values["entered_at"] = _utc(values["entered_at"])
        legacy = values.pop("winner", None)
        values["winners"] = dict(values.get("winners") or {})
        if legacy is not None:
            values["winners"].setdefault(LEGACY_DECISION, legacy)
        for moment in ("goal_until", "paused_since"):
            if values.get(moment) is not None:
                values[moment] = _utc(values[moment])
        return cls(**values)


@dataclass
class UserState:
    user_id: str
    version: int = 0
    attributes: dict[str, Any] = field(default_factory=dict)
    subscriptions: dict[str, bool] = field(default_factory=dict)
    topics: dict[str, bool] = field(default_factory=dict)  # topic -> subscribed; absent: yes
    timezone: str | None = None
    locale: str | None = None
    # name -> {count, first_at, last_at}; a name is absent until it happened once.
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    # template -> {count, last_at}
    received: dict[str, dict[str, Any]] = field(default_factory=dict)
    # attribute -> when an update last changed its value (or removed it)
    changed: dict[str, datetime] = field(default_factory=dict)
    sends: list[dict[str, Any]] = field(default_factory=list)  # [{channel, at}], newest last
    # journey id -> {"entries": {entry_id: EntryState}, "last_entered_at": dt, "entered": n,
    #   "goals": {entry_id: {"version": v, "until": dt, "variants": {split step: branch}}}}; goals
    #   are those of finished entries whose goal window is still open
    journeys: dict[str, dict[str, Any]] = field(default_factory=dict)
    timers: list[PendingTimer] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)
    # journey id -> message step id -> its digest: {since, events (names), keep, counts
    #   {name: n}, latest [{name, at, properties}] (newest last, at most `keep`)}; see
    #   app.engine.digests. A document written before digests has none.
    digests: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def new(cls, user_id: str) -> UserState:
        return cls(user_id=user_id)

    def copy(self) -> UserState:
        """A copy the engine may change without changing this state: every container the engine
        changes in place is copied, down to the level it changes; what it only replaces (attribute
        values, send and digest records, the entry context) and what cannot change (frozen
        timers, strings, datetimes) is shared. tests/engine/test_state_copy.py holds the engine
        to it: an input never changes the state it was applied to."""
        return UserState(
            user_id=self.user_id,
            version=self.version,
            attributes=dict(self.attributes),
            subscriptions=dict(self.subscriptions),
            topics=dict(self.topics),
            timezone=self.timezone,
            locale=self.locale,
            events={name: dict(history) for name, history in self.events.items()},
            received={name: dict(history) for name, history in self.received.items()},
            changed=dict(self.changed),
            sends=list(self.sends),
            journeys={
                journey_id: _journey_copy(record) for journey_id, record in self.journeys.items()
            },
            timers=list(self.timers),
            applied=list(self.applied),
            digests={
                journey_id: {step_id: _digest_copy(record) for step_id, record in steps.items()}
                for journey_id, steps in self.digests.items()
            },
        )

    # --- what the shell needs --------------------------------------------------------------

    def next_due_at(self) -> datetime | None:
        return min((t.due_at for t in self.timers), default=None)

    def due_timers(self, now: datetime) -> list[PendingTimer]:
        return sorted(
            (t for t in self.timers if t.due_at <= now), key=lambda t: (t.due_at, t.timer_id)
        )

    # --- entries ---------------------------------------------------------------------------

    def entries(self, journey_id: str) -> dict[str, EntryState]:
        return self.journeys.get(journey_id, {}).get("entries", {})

    def active_entries(self) -> list[EntryState]:
        return [e for j in self.journeys.values() for e in j.get("entries", {}).values()]

    def timers_of(self, entry: EntryState) -> list[PendingTimer]:
        return [
            t
            for t in self.timers
            if t.journey_id == entry.journey_id and t.entry_id == entry.entry_id
        ]

    # --- documents -------------------------------------------------------------------------

    def to_document(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "version": self.version,
            "attributes": self.attributes,
            "subscriptions": self.subscriptions,
            "topics": self.topics,
            "timezone": self.timezone,
            "locale": self.locale,
            "events": self.events,
            "received": self.received,
            "changed": self.changed,
            "sends": self.sends,
            "journeys": {
                journey_id: {
                    **{k: v for k, v in journey.items() if k != "entries"},
                    "entries": {
                        eid: e.to_document() for eid, e in journey.get("entries", {}).items()
                    },
                }
                for journey_id, journey in self.journeys.items()
            },
            "timers": [t.to_document() for t in self.timers],
            "applied": self.applied,
            "digests": self.digests,
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> UserState:
        journeys = {}
        for journey_id, journey in (document.get("journeys") or {}).items():
            restored = {k: v for k, v in journey.items() if k != "entries"}
            if restored.get("last_entered_at") is not None:
                restored["last_entered_at"] = _utc(restored["last_entered_at"])
            if "goals" in restored:
                restored["goals"] = {
                    eid: {**goal, "until": _utc(goal["until"])}
                    for eid, goal in restored["goals"].items()
                }
            restored["entries"] = {
                eid: EntryState.from_document(e)
                for eid, e in (journey.get("entries") or {}).items()
            }
            journeys[journey_id] = restored
        return cls(
            user_id=document["user_id"],
            version=int(document.get("version", 0)),
            attributes=_utc_values(dict(document.get("attributes") or {})),
            subscriptions=dict(document.get("subscriptions") or {}),
            topics=dict(document.get("topics") or {}),
            timezone=document.get("timezone"),
            locale=document.get("locale"),
            events={k: _utc_values(dict(v)) for k, v in (document.get("events") or {}).items()},
            received={k: _utc_values(dict(v)) for k, v in (document.get("received") or {}).items()},
            changed=_utc_values(dict(document.get("changed") or {})),
            sends=[_utc_values(dict(s)) for s in document.get("sends") or []],
            journeys=journeys,
            timers=[PendingTimer.from_document(t) for t in document.get("timers") or []],
            applied=list(document.get("applied") or []),
            digests={
                journey_id: {step_id: _digest(record) for step_id, record in steps.items()}
                for journey_id, steps in (document.get("digests") or {}).items()
            },
        )


def _journey_copy(record: dict[str, Any]) -> dict[str, Any]:
    """A journey's record: its entries (changed in place) and tracked goals (removed one by one)
    copied; a goal's own record is never changed."""
    copied = dict(record)
    if "entries" in record:
        copied["entries"] = {eid: entry.copy() for eid, entry in record["entries"].items()}
    if "goals" in record:
        copied["goals"] = dict(record["goals"])
    return copied


def _digest_copy(record: dict[str, Any]) -> dict[str, Any]:
    """A digest record: its counts are changed in place, its lists are replaced."""
    return {**record, "counts": dict(record["counts"])}


def _utc(moment: datetime) -> datetime:
    """MongoDB returns naive UTC datetimes unless the client is tz-aware: accept both."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _digest(record: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **record,
        "since": _utc(record["since"]),
        "events": list(record["events"]),
        "counts": dict(record["counts"]),
        "latest": [{**e, "at": _utc(e["at"])} for e in record["latest"]],
    }


def _utc_values(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _utc(v) if isinstance(v, datetime) else v for k, v in values.items()}
