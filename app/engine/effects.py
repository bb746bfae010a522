"""What a transition asks the world to do. The engine only describes effects; the worker (or the
simulator) carries them out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.engine.definitions import WebhookRequest
    from app.engine.entry_limits import EntrySlot
    from app.engine.state import UserState


def utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Send:
    dispatch_id: str
    journey_id: str
    journey_version: int
    user_id: str
    entry_id: str
    step_id: str
    channel: str
    template_id: str
    locale: str | None
    variables: dict[str, Any]
    address: str | None
    send_at: datetime
    # (lock name "<journey>:<user>:<entry>:<decision step>", branch id) for every decision (paths
    # or split) the entry took before this send, in the order taken.
    branches: tuple[tuple[str, str], ...] = ()
    # A webhook step's own request, carried to the sender with the send.
    webhook: WebhookRequest | None = None
    # The step's subscription topic (None for a transactional journey's sends), and whether the
    # journey is transactional (no unsubscribe link); both left out of the record when unset.
    topic: str | None = None
    transactional: bool = False

    def to_record(self) -> dict[str, Any]:
        webhook = {"webhook": self.webhook.to_record()} if self.webhook is not None else {}
        topic = {"topic": self.topic} if self.topic is not None else {}
        transactional = {"transactional": True} if self.transactional else {}
        return {
            "kind": "send",
            "dispatch_id": self.dispatch_id,
            "journey_id": self.journey_id,
            "journey_version": self.journey_version,
            "user_id": self.user_id,
            "entry_id": self.entry_id,
            "step_id": self.step_id,
            "channel": self.channel,
            "template_id": self.template_id,
            "locale": self.locale,
            "variables": self.variables,
            "address": self.address,
            "send_at": utc_text(self.send_at),
            "branches": [list(pair) for pair in self.branches],
            **webhook,
            **topic,
            **transactional,
        }


@dataclass(frozen=True)
class ScheduleTimer:
    timer_id: str
    user_id: str
    due_at: datetime
    journey_id: str
    entry_id: str
    step_id: str

    def to_record(self) -> dict[str, Any]:
        return {
            "kind": "schedule_timer",
            "timer_id": self.timer_id,
            "user_id": self.user_id,
            "due_at": utc_text(self.due_at),
            "journey_id": self.journey_id,
            "entry_id": self.entry_id,
            "step_id": self.step_id,
        }


@dataclass(frozen=True)
class CancelTimer:
    timer_id: str
    user_id: str
    journey_id: str
    entry_id: str
    step_id: str

    def to_record(self) -> dict[str, Any]:
        return {
            "kind": "cancel_timer",
            "timer_id": self.timer_id,
            "user_id": self.user_id,
            "journey_id": self.journey_id,
            "entry_id": self.entry_id,
            "step_id": self.step_id,
        }


@dataclass(frozen=True)
class Analytics:
    """entered, waited, path_chosen, path_skipped, suppressed, converted, exited, completed.

    What conversions are counted by rides along: `holdout` on every record of a control-group
    entry, and `variants` ((split step, branch) pairs) on a split's `path_chosen` and on a
    `converted`, so the timeline can count entries and conversions per version, per split
    variant and for the holdout. Both are left out of the record when unset."""

    event: str
    journey_id: str
    journey_version: int
    user_id: str
    entry_id: str
    step_id: str | None
    at: datetime
    reason: str | None = None
    holdout: bool = False
    variants: tuple[tuple[str, str], ...] = ()

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "kind": "analytics",
            "event": self.event,
            "journey_id": self.journey_id,
            "journey_version": self.journey_version,
            "user_id": self.user_id,
            "entry_id": self.entry_id,
            "step_id": self.step_id,
            "at": utc_text(self.at),
            "reason": self.reason,
        }
        if self.holdout:
            record["holdout"] = True
        if self.variants:
            record["variants"] = dict(self.variants)  # an object: FerretDB nests no arrays
        return record


Effect = Send | ScheduleTimer | CancelTimer | Analytics


@dataclass(frozen=True)
class Transition:
    """The new state and its effects; or, when `asks` is not empty, entry slots the input
    needs answers for: the shell answers them and applies the input again, and never stores a
    transition with asks (see `app.engine.entry_limits`)."""

    state: UserState
    effects: list[Effect] = field(default_factory=list)
    asks: tuple[EntrySlot, ...] = ()
