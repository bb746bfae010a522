"""Properties over random event sequences through every kind of step: never the same dispatch id
twice, at most one branch per decision, replays change nothing, holdouts get nothing, quiet hours
and frequency caps hold, and the simulator's output does not depend on how inputs are batched."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.authoring.files import load_journey
from app.engine import JourneyEngine, Send, TimerFired, UserEvent, load_journey_text
from app.engine.definitions import FrequencyCap, QuietHours, Rules
from app.engine.simulator import Simulator

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
T0 = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)
SPLIT_WITH_HOLDOUT = """
id: split-holdout
version: 1
entry: {event: viewed_product}
holdout: 50
re_entry: every_time
steps:
  ab:
    type: split
    branches:
      - {id: a, percent: 50, next: a_msg}
      - {id: b, percent: 50, next: wait}
  wait: {type: delay, duration: 2h, next: b_msg}
  a_msg: {type: message, channel: push, template: a}
  b_msg: {type: message, channel: email, template: b}
"""
QUIET = QuietHours(datetime(2000, 1, 1, 22).time(), datetime(2000, 1, 1, 8).time())
CAP = FrequencyCap("push", 2, timedelta(days=1))
ZONES = ["UTC", "Europe/Paris", "Asia/Tokyo", "America/Los_Angeles"]
NAMES = [
    "signed_up",
    "added_class",
    "added_student",
    "purchased",
    "viewed_product",
    "added_to_cart",
]


def engine() -> JourneyEngine:
    journeys = [
        load_journey(EXAMPLES / f"{name}.yaml")
        for name in ("demo-onboarding", "branching", "classdojo-activation", "abandoned-cart")
    ]
    journeys.append(load_journey_text(SPLIT_WITH_HOLDOUT))
    return JourneyEngine(journeys, Rules(QUIET, (CAP,)))


ENGINE = engine()


@st.composite
def event_streams(draw: st.DrawFn) -> list[UserEvent]:
    count = draw(st.integers(1, 40))
    users = [f"u{i}" for i in range(draw(st.integers(1, 6)))]
    zone_of = {u: draw(st.sampled_from(ZONES)) for u in users}
    events = []
    for i in range(count):
        user = draw(st.sampled_from(users))
        attributes = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "role": st.sampled_from(["teacher", "parent"]),
                    "platform": st.sampled_from(["ios", "web"]),
                    "lifetime_value": st.integers(0, 1000),
                    "push_token": st.just(f"tok-{user}"),
                },
            )
        )
        events.append(
            UserEvent(
                event_id=f"e{i}",
                user_id=user,
                name=draw(st.sampled_from(NAMES)),
                at=T0 + timedelta(minutes=draw(st.integers(0, 4 * 24 * 60))),
                attributes=attributes,
                subscriptions=draw(st.sampled_from([{}, {}, {"email": False}])),
                timezone=zone_of[user],
            )
        )
    return events


def simulate(events: list[UserEvent], chunks: list[int] | None = None) -> Simulator:
    simulator = Simulator(ENGINE)
    ordered = sorted(events, key=lambda e: e.at)
    if chunks:
        start = 0
        for size in chunks:
            simulator.feed(ordered[start : start + size])
            start += size
        simulator.feed(ordered[start:])
    else:
        simulator.feed(ordered)
    simulator.finish(timedelta(days=10))
    return simulator


def sends(simulator: Simulator) -> list[Send]:
    return [e.effect for e in simulator.effects if isinstance(e.effect, Send)]


PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(event_streams())
def test_no_dispatch_id_is_emitted_twice(events: list[UserEvent]) -> None:
    ids = [s.dispatch_id for s in sends(simulate(events))]
    assert len(ids) == len(set(ids))


@PROPERTY
@given(event_streams())
def test_at_most_one_branch_fires_per_decision(events: list[UserEvent]) -> None:
    branches: dict[str, set[str]] = defaultdict(set)
    for send in sends(simulate(events)):
        for lock, branch_id in send.branches:
            branches[lock].add(branch_id)
    assert all(len(ids) == 1 for ids in branches.values())


@PROPERTY
@given(event_streams())
def test_applying_an_applied_input_changes_nothing(events: list[UserEvent]) -> None:
    simulator = simulate(events)
    fired = [
        e.effect for e in simulator.effects if e.effect.to_record()["kind"] == "schedule_timer"
    ]
    for event in events:
        state = simulator.states[event.user_id]
        transition = ENGINE.apply(state, event, event.at + timedelta(days=30))
        assert transition.effects == [] and transition.state == state
    for timer in fired:
        state = simulator.states[timer.user_id]
        again = ENGINE.apply(state, TimerFired(timer.user_id, timer.timer_id, timer.due_at), T0)
        assert again.effects == [] and again.state == state


@PROPERTY
@given(event_streams())
def test_holdout_users_get_no_send(events: list[UserEvent]) -> None:
    simulator = simulate(events)
    held_out = {
        (e.effect.journey_id, e.effect.user_id, e.effect.entry_id)
        for e in simulator.effects
        if getattr(e.effect, "event", "") == "entered" and "holdout" in (e.effect.reason or "")
    }
    assert not {(s.journey_id, s.user_id, s.entry_id) for s in sends(simulator)} & held_out


@PROPERTY
@given(event_streams())
def test_quiet_hours_and_frequency_caps_hold(events: list[UserEvent]) -> None:
    simulator = simulate(events)
    push_times: dict[str, list[datetime]] = defaultdict(list)
    for send in sends(simulator):
        zone = ZoneInfo(simulator.states[send.user_id].timezone or "UTC")
        assert not QUIET.contains(send.send_at.astimezone(zone).time())
        if send.channel == "push":
            push_times[send.user_id].append(send.send_at)
    for times in push_times.values():
        times.sort()
        for i, moment in enumerate(times):
            assert sum(1 for t in times[i:] if t - moment < CAP.window) <= CAP.limit


@PROPERTY
@given(event_streams(), st.lists(st.integers(1, 10), max_size=6))
def test_output_does_not_depend_on_batching(events: list[UserEvent], chunks: list[int]) -> None:
    whole = [e.to_record() for e in simulate(events).effects]
    batched = [e.to_record() for e in simulate(events, chunks).effects]
    assert sorted(whole, key=str) == sorted(batched, key=str)
