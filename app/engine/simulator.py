"""The offline simulator: the engine with a virtual clock and in-memory state. Timers fire in
time order between events, so the result is what the live pipeline produces for the same events,
and it is the oracle the pipeline is tested against.

Events apply in the order they are fed, as a worker applies a user's events in the order Kafka
keeps them. Each event is received at its own time, or at the user's clock (the time of the
user's latest input) when it comes later than that: an event that arrives after a timer of its
user fired applies after that timer, whatever time it carries. Only the user's own timers fire
before an event (users share nothing), so a file grouped by user gives the same result as one
sorted by time. At equal times an event goes before the timers and schedule ticks due then (see
`app.engine.inputs.input_order`)."""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from croniter import croniter

from app.engine.definitions import ScheduleEntry
from app.engine.effects import Analytics, CancelTimer, Effect, ScheduleTimer, Send, utc_text
from app.engine.engine import JourneyEngine, zone_of
from app.engine.entry_limits import EntryLedger
from app.engine.inputs import (
    EngineInput,
    EventTimeError,
    ScheduledEntry,
    TimerFired,
    UserEvent,
)
from app.engine.state import UserState

MAX_PENDING = 100_000


@dataclass(frozen=True)
class SimulatedEffect:
    at: datetime
    effect: Effect

    def to_record(self) -> dict[str, object]:
        effect = self.effect
        record: dict[str, object] = {
            "at": utc_text(self.at),
            "user": effect.user_id,
            "journey": effect.journey_id,
            "entry": effect.entry_id,
            "step": effect.step_id,
            "kind": effect.event if isinstance(effect, Analytics) else effect.to_record()["kind"],
            "dispatch_id": effect.dispatch_id if isinstance(effect, Send) else None,
        }
        if isinstance(effect, Send):
            record.update(
                channel=effect.channel,
                template=effect.template_id,
                branches=[list(pair) for pair in effect.branches],
            )
        if isinstance(effect, Analytics):
            full = effect.to_record()
            record.update(
                reason=effect.reason,
                **{key: full[key] for key in ("holdout", "variants") if key in full},
            )
        if isinstance(effect, ScheduleTimer):
            record["due_at"] = utc_text(effect.due_at)
        return record


class Simulator:
    """Feed events in any number of batches; `run_until` fires what is due by then (timers and
    schedule ticks, in time order). The result does not depend on the batching."""

    def __init__(self, engine: JourneyEngine) -> None:
        self.engine = engine
        self.states: dict[str, UserState] = {}
        self.effects: list[SimulatedEffect] = []
        self.refused: list[tuple[UserEvent, str]] = []
        # (due, timer id or "~tick:<journey>", user): ticks sort after timers due at the same time.
        self._due: list[tuple[datetime, str, str]] = []
        self._clock: datetime | None = None
        self._user_clock: dict[str, datetime] = {}
        self._ticked_until: datetime | None = None
        self.ledger = EntryLedger()  # entry limits' counts, as the workers keep them in Redis

    def feed(self, events: Iterable[UserEvent]) -> None:
        """Applies the events in the order given, each received at its `received_at`, or else
        at the later of its own time and its user's clock; one whose time the engine refuses
        (see `EventTimePolicy`) is kept in `refused` with the reason, as a worker dead-letters
        it."""
        for event in events:
            clock = self._user_clock.get(event.user_id)
            received = event.received_at or (max(event.at, clock) if clock else event.at)
            event = replace(event, received_at=received)
            self._add_ticks(received)
            self._fire_user(event.user_id, received)
            try:
                self._apply(event, received)
            except EventTimeError as error:
                self.refused.append((event, str(error)))

    def run_until(self, until: datetime) -> None:
        """Fires every timer and tick due at or before `until`, in time order."""
        self._add_ticks(until)
        while self._due and self._due[0][0] <= until:
            self._fire(heapq.heappop(self._due))

    def _fire_user(self, user_id: str, before: datetime) -> None:
        """Fires the user's timers and ticks due strictly before `before`, in time order (an
        event at exactly a due time goes first)."""
        while due := [d for d in self._due if d[2] == user_id and d[0] < before]:
            first = min(due)
            self._due.remove(first)
            heapq.heapify(self._due)
            self._fire(first)

    def _fire(self, due: tuple[datetime, str, str]) -> None:
        at, key, user_id = due
        if key.startswith("~tick:"):
            self._apply(ScheduledEntry(user_id, key.removeprefix("~tick:"), at), at)
        else:
            self._apply(TimerFired(user_id, key, at), at)

    def finish(self, horizon: timedelta = timedelta(days=60)) -> None:
        """Fires what is due up to `horizon` after the last input."""
        if self._clock is not None:
            self.run_until(self._clock + horizon)

    def _apply(self, item: EngineInput, now: datetime) -> None:
        self._clock = max(self._clock or now, now)
        self._user_clock[item.user_id] = max(self._user_clock.get(item.user_id, now), now)
        state = self.states.get(item.user_id) or UserState.new(item.user_id)
        transition = self.engine.apply(state, item, now)
        while transition.asks:  # entry limits: the ledger answers, the input applies again
            transition = self.engine.apply(state, item, now, self.ledger.grant(transition.asks))
        self.states[item.user_id] = transition.state
        for effect in transition.effects:
            at = effect.send_at if isinstance(effect, Send) else now
            self.effects.append(SimulatedEffect(at, effect))
            if isinstance(effect, ScheduleTimer):
                heapq.heappush(self._due, (effect.due_at, effect.timer_id, effect.user_id))
            elif isinstance(effect, CancelTimer):
                self._due = [d for d in self._due if d[1] != effect.timer_id]
                heapq.heapify(self._due)

    def _add_ticks(self, until: datetime) -> None:
        """Recurring journeys enter each known user at every tick of their cron, in the user's
        time zone (the workers' scheduler does the same for the audience's Mongo filter)."""
        start = self._ticked_until or self._clock
        if start is None or until <= start:
            return
        self._ticked_until = until
        for journey in self.engine.current.values():
            if not isinstance(journey.entry, ScheduleEntry):
                continue
            for user_id, state in self.states.items():
                ticks = croniter(journey.entry.cron, start.astimezone(zone_of(state)))
                while (tick := ticks.get_next(datetime)) <= until:
                    heapq.heappush(
                        self._due, (tick.astimezone(UTC), f"~tick:{journey.id}", user_id)
                    )
                    if len(self._due) > MAX_PENDING:
                        raise ValueError("the simulation schedules more than 100,000 inputs ahead")


def simulate(engine: JourneyEngine, events: Iterable[UserEvent]) -> list[SimulatedEffect]:
    simulator = Simulator(engine)
    simulator.feed(events)
    simulator.finish()
    return simulator.effects
