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
from app.engine.definitions import ScheduleEntry
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
# Every example plays in the past: its events are published at once, each record stamped with
# its event's time (a producer replaying a log, into journeys that take events from before their
# publication), placed so that everything they set off came due just before now. The worker
# fires a user's timers due before an event's time first, as the simulator does, and the pump
# fires the rest at once.
EXAMPLE_SETTLE = timedelta(seconds=60)
HEADROOM = timedelta(seconds=10)
# Scheduled journeys enter users at cron ticks as they come, in real time: the weekly summary's
# ticks are Mondays (tests/worker/test_scheduler.py covers the scheduler).
REAL_TIME_EXAMPLES = ("weekly-summary",)


# --- generated cases ----------------------------------------------------------------------------


async def test_generated_cases_deliver_what_the_simulator_predicts(pipeline, tmp_path) -> None:
    outcome = await run_generated(
        pipeline, tmp_path, [SEED + i for i in range(CASES)], rules=WITH_RULES
    )
    print(f"{outcome.title()} (DIFFERENTIAL_SEED={SEED} DIFFERENTIAL_CASES={CASES})")
    if outcome.diverged:
        pytest.fail(f"DIFFERENTIAL_SEED={SEED} DIFFERENTIAL_CASES={CASES}: " + outcome.explain())


# --- the examples -------------------------------------------------------------------------------


def example_names() -> list[str]:
    return sorted(path.stem for path in EXAMPLES.glob("*.yaml"))


def in_the_past(name: str, now: datetime) -> list[dict]:
    """The example's events moved so that the last thing they set off (or the last event, when
    it sets nothing off, such as an open after its wait timed out) comes due HEADROOM before
    `now`."""
    events = read_jsonl("user-events", EXAMPLES / f"{name}.events.jsonl")
    simulator = Simulator(JourneyEngine([load_journey(EXAMPLES / f"{name}.yaml")]))
    simulator.feed([UserEvent.from_record(e) for e in events])
    simulator.finish()
    last_event = max(datetime.fromisoformat(e["at"]) for e in events)
    last_effect = max([item.at for item in simulator.effects] + [last_event])
    return rebased(events, now - HEADROOM - (last_effect - last_event))


def test_only_scheduled_examples_are_left_out_of_the_live_runs() -> None:
    scheduled = [
        name
        for name in example_names()
        if isinstance(load_journey(EXAMPLES / f"{name}.yaml").entry, ScheduleEntry)
    ]
    assert scheduled == list(REAL_TIME_EXAMPLES)


@pytest.mark.parametrize(
    "name", [name for name in example_names() if name not in REAL_TIME_EXAMPLES]
)
async def test_example_delivers_what_the_simulator_predicts(pipeline, tmp_path, name) -> None:
    # Events from before a journey's publication enter it only when its file says so.
    path = tmp_path / f"{name}.yaml"
    path.write_text((EXAMPLES / f"{name}.yaml").read_text() + "\nenter_past_events: true\n")
    async with provider(pipeline) as stub:
        await pipeline.deploy(path)
        pipeline.start("worker")
        pipeline.start("sender")
        await ready(pipeline, stub, tmp_path, 0)
        now = datetime.now(UTC)
        events = in_the_past(name, now)
        engine = JourneyEngine([load_journey(path)])
        prediction = oracle(engine, events, now + EXAMPLE_SETTLE)
        assert prediction.deliveries, "the example sends nothing to compare"
        await pipeline.publish(events, at_event_times=True)
        got, timeline = await settle_all(pipeline, stub, prediction)
    expected, marks = prediction.deliveries, prediction.marks
    title = f"example {name}: {len(expected)} deliveries expected, {len(got)} received"
    assert (got, timeline) == (expected, marks), report(
        title, expected, got, marks, timeline, prediction.sends
    )
