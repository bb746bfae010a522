"""The engine is pure: applying an input never changes the state it was given. `UserState.copy`
copies only what the engine changes in place and shares the rest, so this is checked over
generated cases (every step type, goals, decisions, digests, caps): before each input the state
is deep-copied aside, and after it the state must equal that copy. Hypothesis draws the seeds
(the same ones every run): `generate_case(seed, SIM)` rebuilds a failing case."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import datetime

import pytest
from hypothesis import given

from app.engine import EngineInput, JourneyEngine, Transition, UserState, load_simulation_rules_text
from app.engine.simulator import Simulator
from tests.engine.test_generated import LIVE_BASE, PROPERTY, SCALES, SEEDS
from tests.generated import generate_case


class WatchedEngine(JourneyEngine):
    """The engine, checking at every input that the state it was given is left as it was."""

    applied = 0

    def apply(
        self,
        state: UserState,
        item: EngineInput,
        now: datetime,
        slots: Mapping[str, bool] | None = None,
    ) -> Transition:
        before = copy.deepcopy(state)
        transition = super().apply(state, item, now, slots)
        assert state == before, f"applying {item} changed the state it was given"
        assert transition.state.copy() == transition.state
        self.applied += 1
        return transition


@pytest.mark.parametrize("scale", SCALES)
@PROPERTY
@given(seed=SEEDS)
def test_applying_an_input_never_changes_the_given_state(scale: str, seed: int) -> None:
    case = generate_case(seed, SCALES[scale], LIVE_BASE if SCALES[scale].live else None)
    rules = load_simulation_rules_text(case.rules) if case.rules is not None else None
    engine = WatchedEngine(case.loaded(), rules)
    simulator = Simulator(engine)
    simulator.feed(case.user_events())
    simulator.finish()
    assert engine.applied >= len(case.events)


def test_a_copy_shares_no_container_the_engine_changes() -> None:
    """Changed in place in a copy, the containers the engine changes leave the original alone."""
    at = datetime.fromisoformat("2026-11-02T09:00:00+00:00")
    state = UserState.from_document(
        {
            "user_id": "u",
            "attributes": {"plan": "pro"},
            "subscriptions": {"email": True},
            "events": {"opened": {"count": 1, "first_at": at, "last_at": at}},
            "received": {"welcome": {"count": 1, "last_at": at}},
            "journeys": {
                "j": {
                    "entries": {
                        "e": {
                            "entry_id": "e",
                            "journey_id": "j",
                            "version": 1,
                            "entered_at": at,
                            "winners": {"split": "a"},
                        }
                    },
                    "entered": 1,
                    "goals": {"old": {"version": 1, "until": at, "variants": {}}},
                }
            },
            "digests": {"j": {"m": {"since": at, "events": ["opened"], "keep": 3,
                                    "counts": {"opened": 1}, "latest": []}}},
        }
    )  # fmt: skip
    before = copy.deepcopy(state)
    changed = state.copy()
    assert changed == state
    changed.attributes["plan"] = "free"
    changed.subscriptions["email"] = False
    changed.events["opened"]["count"] += 1
    changed.received["welcome"]["count"] += 1
    entry = changed.journeys["j"]["entries"]["e"]
    entry.winners["paths"] = "b"
    entry.converted = True
    changed.journeys["j"]["entered"] += 1
    del changed.journeys["j"]["goals"]["old"]
    changed.journeys["j"]["entries"].pop("e")
    changed.digests["j"]["m"]["counts"]["opened"] += 1
    assert state == before
