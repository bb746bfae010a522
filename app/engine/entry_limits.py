"""Entry limits (Braze's): at most `per_minute` entries into a journey in any one minute, and at
most `total` ever, over all its users and versions.

The count is journey-wide, and the engine sees one user at a time, so the engine does not keep
it. It asks instead: when every other rule lets a user in (audience, re-entry, one entry at a
time), an entry into a journey with limits needs a slot, and `JourneyEngine.apply` takes the
answers it has (`slots`, grant id -> granted). A slot it has no answer for comes back in the
transition's `asks`, with the user not entered; the shell answers (the simulator from an
`EntryLedger`, the worker from Redis with the same rule, atomically, `app/worker/entry_slots.py`)
and applies the same input again with the answers. Such a transition is never stored. So the
engine stays a pure function, the rule lives in one place, and the simulator and the worker
admit the same entries whenever they meet the requests in the same order.

A grant id names the journey, the user and the input, so a replayed input (after a crash, or in
a conflict round) asks for the same slot and gets the answer it had: a slot is spent once. The
minute is the entry time's minute (UTC), so it does not depend on when a worker gets to it.
Which users take the last slots of a minute depends on the order requests come in: in the
simulator the order it applies inputs in, in the workers the order they reach Redis."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from app.engine.definitions import EntryLimits


@dataclass(frozen=True)
class EntrySlot:
    """A request for one entry into a journey with entry limits."""

    grant_id: str  # "<journey>|<user>|<input id>": the same input asks for the same slot
    journey_id: str
    minute: datetime  # the entry time, cut to its minute
    limits: EntryLimits


def admits(limits: EntryLimits, in_minute: int, ever: int) -> bool:
    """The rule: a slot is granted while the journey's entries in the slot's minute are fewer
    than `per_minute` and its entries ever fewer than `total`; a granted slot counts in both."""
    return (limits.per_minute is None or in_minute < limits.per_minute) and (
        limits.total is None or ever < limits.total
    )


@dataclass
class EntryLedger:
    """The simulator's counts: the rule of `admits` over counters in memory."""

    in_minute: Counter[tuple[str, datetime]] = field(default_factory=Counter)
    ever: Counter[str] = field(default_factory=Counter)
    answers: dict[str, bool] = field(default_factory=dict)

    def grant(self, slots: Iterable[EntrySlot]) -> dict[str, bool]:
        """An answer for each slot, in order; a grant id answered before keeps its answer."""
        for slot in slots:
            if slot.grant_id in self.answers:
                continue
            minute = (slot.journey_id, slot.minute)
            granted = admits(slot.limits, self.in_minute[minute], self.ever[slot.journey_id])
            if granted:
                self.in_minute[minute] += 1
                self.ever[slot.journey_id] += 1
            self.answers[slot.grant_id] = granted
        return self.answers
