"""A generated case: journeys, an optional global rules file and an event stream, from a seed."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from app.engine import (
    Journey,
    JourneyEngine,
    UserEvent,
    load_journey_text,
    load_simulation_rules_text,
)
from tests.generated.events import add_message_events, generate_events, users
from tests.generated.journeys import generate_journeys, generate_rules
from tests.generated.scale import TimeScale

# Sim-scale cases start near DST changes (EU and US, spring and autumn; Sydney in April) or on
# an ordinary day.
SIM_BASES = (
    datetime(2026, 3, 28, 22, 0, tzinfo=UTC),
    datetime(2026, 10, 24, 21, 30, tzinfo=UTC),
    datetime(2026, 3, 7, 18, 0, tzinfo=UTC),
    datetime(2026, 10, 31, 20, 0, tzinfo=UTC),
    datetime(2026, 4, 4, 10, 0, tzinfo=UTC),
    datetime(2026, 6, 15, 9, 0, tzinfo=UTC),
)


@dataclass(frozen=True)
class Case:
    seed: int
    scale: str
    base: datetime
    journeys: tuple[str, ...]  # journey files' text
    rules: str | None  # a global rules file's text
    events: tuple[dict[str, Any], ...]  # user-events records, in publishing order

    def loaded(self) -> list[Journey]:
        return [
            load_journey_text(text, f"<case {self.seed} journey {i}>")
            for i, text in enumerate(self.journeys)
        ]

    def engine(self) -> JourneyEngine:
        rules = load_simulation_rules_text(self.rules) if self.rules is not None else None
        return JourneyEngine(self.loaded(), rules)

    def user_events(self) -> list[UserEvent]:
        return [UserEvent.from_record(record) for record in self.events]

    def describe(self) -> str:
        """The whole case, readable, for a failing test's output."""
        lines = [f"case seed={self.seed} scale={self.scale} base={self.base.isoformat()}"]
        for text in self.journeys:
            lines += ["--- journey", text.rstrip()]
        if self.rules is not None:
            lines += ["--- rules", self.rules.rstrip()]
        lines.append("--- events")
        lines += [str(record) for record in self.events]
        return "\n".join(lines)


def generate_case(
    seed: int, scale: TimeScale, base: datetime | None = None, rules: bool = True
) -> Case:
    """The case of `seed`. At the sim scale `base` defaults to one of SIM_BASES; at the live
    scale it is when the events start (a time of day is computed from it)."""
    rng = random.Random(seed)
    if base is None:
        base = rng.choice(SIM_BASES) + timedelta(minutes=rng.randint(0, 120))
    prefix = f"g{seed}"
    people = users(rng, prefix)
    zones = [user.timezone or "UTC" for user in people]
    journeys = generate_journeys(rng, scale, base, zones, prefix)
    rules_text = generate_rules(rng, scale, base, zones) if rules else None
    loaded = [load_journey_text(text) for text in journeys]
    events = generate_events(rng, scale, base, loaded, people)
    simulated = JourneyEngine(
        loaded, load_simulation_rules_text(rules_text) if rules_text is not None else None
    )
    events = add_message_events(random.Random(f"{seed}:message-events"), scale, simulated, events)
    return Case(seed, scale.name, base, tuple(journeys), rules_text, tuple(events))
