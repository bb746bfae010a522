"""Differential tests: generated cases (tests/generated) and the examples run through the real
worker, sender and provider stub on real Kafka, MongoDB-wire and Redis, against the simulator
over the same journeys and the same events (tests/differential.py). The provider must receive
exactly the simulator's sends (dispatch id, recipient, channel, template, locale), and the
timeline must agree with it on who was suppressed and who exited.

`DIFFERENTIAL_CASES` and `DIFFERENTIAL_SEED` override the CI count and the first seed;
`DIFFERENTIAL_RULES=0` leaves out the generated global rules files. `scripts/bench
--differential N` runs many more cases the same way."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.authoring.files import load_journey
from app.engine import JourneyEngine, UserEvent
from app.engine.simulator import Simulator
from app.streams.publish import rebased
from app.topics import read_jsonl
from tests.differential import (
    oracle,
    provider,
    ready,
    report,
    run_generated,
    settle_all,
)

CASES = int(os.environ.get("DIFFERENTIAL_CASES", "4"))
SEED = int(os.environ.get("DIFFERENTIAL_SEED", "1000"))
WITH_RULES = os.environ.get("DIFFERENTIAL_RULES", "1") == "1"

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
# Examples run live when their events span a few seconds and what they set off comes due within
# a minute; the others take hours or days (or a weekly schedule) to play out.
EXAMPLE_SPAN = timedelta(seconds=5)
EXAMPLE_SETTLE = timedelta(seconds=60)
LIVE_EXAMPLES = ("demo-onboarding",)


# --- generated cases ----------------------------------------------------------------------------


async def test_generated_cases_deliver_what_the_simulator_predicts(pipeline, tmp_path) -> None:
    outcome = await run_generated(
        pipeline, tmp_path, [SEED + i for i in range(CASES)], rules=WITH_RULES
    )
    print(f"{outcome.title()} (DIFFERENTIAL_SEED={SEED} DIFFERENTIAL_CASES={CASES})")
    if outcome.diverged:
        pytest.fail(f"DIFFERENTIAL_SEED={SEED} DIFFERENTIAL_CASES={CASES}: " + outcome.explain())


# --- the examples -------------------------------------------------------------------------------


def example_fits(name: str) -> bool:
    """Whether an example plays out within CI time: its events span seconds and everything it
    sets off comes due within a minute of the last one."""
    events = read_jsonl("user-events", EXAMPLES / f"{name}.events.jsonl")
    times = [datetime.fromisoformat(e["at"]) for e in events]
    simulator = Simulator(JourneyEngine([load_journey(EXAMPLES / f"{name}.yaml")]))
    simulator.feed([UserEvent.from_record(e) for e in events])
    simulator.finish()
    due = [item.at for item in simulator.effects]
    return max(times) - min(times) <= EXAMPLE_SPAN and max(due) <= max(times) + EXAMPLE_SETTLE


def test_the_examples_run_live_are_the_ones_that_fit_in_ci_time() -> None:
    """The rest wait hours or days: base-case (1h and 1d delays), branching (paths of 1 to 3
    days), classdojo-activation (daily reminders), abandoned-cart (an hour's wait),
    weekly-summary (a Monday schedule)."""
    names = sorted(path.stem for path in EXAMPLES.glob("*.yaml"))
    assert tuple(name for name in names if example_fits(name)) == LIVE_EXAMPLES


@pytest.mark.parametrize("name", LIVE_EXAMPLES)
async def test_example_delivers_what_the_simulator_predicts(pipeline, tmp_path, name) -> None:
    path = EXAMPLES / f"{name}.yaml"
    async with provider(pipeline) as stub:
        await pipeline.deploy(path)
        pipeline.start("worker")
        pipeline.start("sender")
        await ready(pipeline, stub, tmp_path, 0)
        now = datetime.now(UTC)
        events = rebased(read_jsonl("user-events", EXAMPLES / f"{name}.events.jsonl"), now)
        engine = JourneyEngine([load_journey(path)])
        prediction = oracle(engine, events, now + EXAMPLE_SETTLE)
        assert prediction.deliveries, "the example sends nothing to compare"
        await pipeline.publish(events)
        got, timeline = await settle_all(pipeline, stub, prediction)
    expected, marks = prediction.deliveries, prediction.marks
    title = f"example {name}: {len(expected)} deliveries expected, {len(got)} received"
    assert (got, timeline) == (expected, marks), report(
        title, expected, got, marks, timeline, prediction.sends
    )
