"""The offline simulator: the engine with a virtual clock and in-memory state. Timers fire in
time order between events, so the result is what the live pipeline produces for the same events,
and it is the oracle the pipeline is tested against. At equal times an event goes before the
timers and schedule ticks due then (see `app.engine.inputs.input_order`)."""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from croniter import croniter

from app.engine.definitions import ScheduleEntry
from app.engine.effects import Analytics, CancelTimer, Effect, ScheduleTimer, Send, utc_text
from app.engine.engine import JourneyEngine, zone_of
from app.engine.inputs import (
    EngineInput,
    EventTimeError,
    ScheduledEntry,
    TimerFired,
    UserEvent,
    input_order,
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
            record["reason"] = effect.reason
        if isinstance(effect, ScheduleTimer):
            record["due_at"] = utc_text(effect.due_at)
        return record


class Simulator:
    """Feed events in any number of batches; `run_until` fires what is due by then (timers and
    schedule ticks, in time order), so the result does not depend on the batching."""

    def __init__(self, engine: JourneyEngine) -> None:
        self.engine = engine
        self.states: dict[str, UserState] = {}
        self.effects: list[SimulatedEffect] = []
        self.refused: list[tuple[UserEvent, str]] = []
        # (due, timer id or "~tick:<journey>", user): ticks sort after timers due at the same time.
        self._due: list[tuple[datetime, str, str]] = []
        self._clock: datetime | None = None
        self._ticked_until: datetime | None = None

    def feed(self, events: Iterable[UserEvent]) -> None:
        """Applies the events in time order; one whose time the engine refuses (see
        `EventTimePolicy`) is kept in `refused` with the reason, as a worker dead-letters it."""
        for event in sorted(events, key=input_order):
            self._fire(event.at, inclusive=False)
            try:
                self._apply(event, event.at)
            except EventTimeError as error:
                self.refused.append((event, str(error)))

    def run_until(self, until: datetime) -> None:
        """Fires every timer and tick due at or before `until`."""
        self._fire(until, inclusive=True)

    def _fire(self, until: datetime, inclusive: bool) -> None:
        self._add_ticks(until)
        while self._due and (self._due[0][0] <= until if inclusive else self._due[0][0] < until):
            due, key, user_id = heapq.heappop(self._due)
            if key.startswith("~tick:"):
                self._apply(ScheduledEntry(user_id, key.removeprefix("~tick:"), due), due)
            else:
                self._apply(TimerFired(user_id, key, due), due)

    def finish(self, horizon: timedelta = timedelta(days=60)) -> None:
        """Fires what is due up to `horizon` after the last input."""
        if self._clock is not None:
            self.run_until(self._clock + horizon)

    def _apply(self, item: EngineInput, now: datetime) -> None:
        self._clock = max(self._clock or now, now)
        state = self.states.get(item.user_id) or UserState.new(item.user_id)
        transition = self.engine.apply(state, item, now)
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
