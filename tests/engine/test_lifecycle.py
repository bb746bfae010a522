"""The lifecycle rules the engine applies from each version's deployment (the registry hands it
over; the simulator takes the same): only the published version takes entries, a paused one
parks its users at their next message until resumed, `--exit-users` exits users at their next
input; `starts_at`, `ends_at`, and events from before the first publication."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.engine import (
    Analytics,
    Deployment,
    Journey,
    JourneyEngine,
    JourneyError,
    ScheduleTimer,
    Send,
    TimerFired,
    UserEvent,
    UserState,
    load_journey_text,
)
from app.engine.lifecycle import ARCHIVED, PAUSED, PUBLISHED
from app.engine.simulator import Simulator

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def version(number: int, head: str = "") -> Journey:
    return load_journey_text(
        f"id: j\nversion: {number}\nentry: {{event: signed_up}}\n{head}steps:\n"
        "  wait: {type: delay, duration: 1h, next: hello}\n"
        f"  hello: {{type: message, channel: email, template: v{number}}}\n"
    )


def signed_up(user: str, at: datetime = T0) -> UserEvent:
    return UserEvent(f"{user}-{at:%H%M%S}", user, "signed_up", at)


def sends(simulator: Simulator) -> list[tuple[str, str, str]]:
    return [
        (f"{item.at:%H:%M:%S}", item.effect.user_id, item.effect.template_id)
        for item in simulator.effects
        if isinstance(item.effect, Send)
    ]


def simulate(engine: JourneyEngine, *events: UserEvent, hours: int = 3) -> Simulator:
    simulator = Simulator(engine)
    simulator.feed(events)
    simulator.run_until(T0 + timedelta(hours=hours))
    return simulator


def test_new_users_enter_the_published_version_not_a_newer_archived_one() -> None:
    engine = JourneyEngine(
        [version(1), version(2)],
        deployments={("j", 1): Deployment(PUBLISHED), ("j", 2): Deployment(ARCHIVED)},
    )
    assert engine.current["j"].version == 1
    assert sends(simulate(engine, signed_up("ada"))) == [("10:00:00", "ada", "v1")]


@pytest.mark.parametrize("status", [PAUSED, ARCHIVED])
def test_a_paused_or_archived_version_takes_no_new_entries(status: str) -> None:
    engine = JourneyEngine([version(1)], deployments={("j", 1): Deployment(status)})
    simulator = simulate(engine, signed_up("ada"))
    assert simulator.effects == [] and engine.current == {}


def inside(at: datetime = T0) -> UserState:
    """A user who entered version 1 at `at` and waits for its one-hour delay."""
    engine = JourneyEngine([version(1)])
    return engine.apply(UserState.new("ada"), signed_up("ada", at), at).state


def test_users_inside_an_archived_version_finish_it() -> None:
    engine = JourneyEngine([version(1)], deployments={("j", 1): Deployment(ARCHIVED)})
    (timer,) = inside().timers
    transition = engine.apply(inside(), TimerFired("ada", timer.timer_id, timer.due_at), T0)
    assert [e.template_id for e in transition.effects if isinstance(e, Send)] == ["v1"]


def test_exit_users_exits_the_users_inside_at_their_next_input() -> None:
    asked = Deployment(ARCHIVED, exit_entered_before=T0 + timedelta(minutes=5))
    engine = JourneyEngine([version(1)], deployments={("j", 1): asked})
    (timer,) = inside().timers
    transition = engine.apply(inside(), TimerFired("ada", timer.timer_id, timer.due_at), T0)
    assert not any(isinstance(e, Send) for e in transition.effects)
    assert [
        (e.event, e.step_id, e.reason) for e in transition.effects if isinstance(e, Analytics)
    ] == [
        ("exited", None, "version 1 archived: users asked to exit"),
        ("waiting", "wait", "left"),  # no longer counted as waiting at the delay
    ]
    assert transition.state.active_entries() == [] and transition.state.timers == []
    # Entries begun after the operator asked stay (a resumed version's new users).
    later = inside(T0 + timedelta(minutes=10))
    (timer,) = later.timers
    kept = engine.apply(later, TimerFired("ada", timer.timer_id, timer.due_at), T0)
    assert [e.template_id for e in kept.effects if isinstance(e, Send)] == ["v1"]


def test_a_paused_version_parks_users_at_their_next_message_until_resumed() -> None:
    paused = JourneyEngine([version(1)], deployments={("j", 1): Deployment(PAUSED)})
    resumed = JourneyEngine([version(1)])
    state = inside()
    (timer,) = state.timers
    fired = paused.apply(state, TimerFired("ada", timer.timer_id, timer.due_at), T0)
    assert not any(isinstance(e, Send) for e in fired.effects)
    due = [e.due_at - timer.due_at for e in fired.effects if isinstance(e, ScheduleTimer)]
    assert due == [timedelta(seconds=5)]
    assert [(e.event, e.step_id, e.reason) for e in fired.effects if isinstance(e, Analytics)] == [
        ("waited", "hello", "journey paused"),
        ("waiting", "wait", "left"),
        ("waiting", "hello", "arrived"),  # the flow page's "waiting now" moves with the user
    ]
    # Still paused: it looks again later each time, up to every 15 minutes.
    state, waits = fired.state, []
    for _ in range(10):
        (recheck,) = state.timers
        step = paused.apply(state, TimerFired("ada", recheck.timer_id, recheck.due_at), T0)
        (next_timer,) = step.state.timers
        waits.append(next_timer.due_at - recheck.due_at)
        state = step.state
    assert waits[:3] == [timedelta(seconds=5), timedelta(seconds=10), timedelta(seconds=20)]
    assert waits[-1] == timedelta(minutes=15)
    (recheck,) = state.timers
    going = resumed.apply(state, TimerFired("ada", recheck.timer_id, recheck.due_at), T0)
    assert [(e.template_id, e.send_at) for e in going.effects if isinstance(e, Send)] == [
        ("v1", recheck.due_at)
    ]
    assert going.state.active_entries() == []
    assert [e.reason for e in going.effects if isinstance(e, Analytics)] == [
        "journey resumed",
        "end of journey",
        "left",
    ]


def test_starts_at_and_ends_at_bound_the_entries_end_points_included() -> None:
    head = "starts_at: 2026-11-02T09:00:00Z\nends_at: '2026-11-02T10:30:00+01:00'\n"
    engine = JourneyEngine([version(1, head)])
    events = [
        signed_up("early", T0 - timedelta(seconds=1)),
        signed_up("first", T0),
        signed_up("last", T0 + timedelta(minutes=30)),
        signed_up("late", T0 + timedelta(minutes=30, seconds=1)),
    ]
    assert [user for _, user, _ in sends(simulate(engine, *events))] == ["first", "last"]


def test_an_event_journey_enters_only_for_events_after_its_first_publication() -> None:
    published = Deployment(PUBLISHED, published_at=T0)
    before, after = signed_up("before", T0 - timedelta(minutes=1)), signed_up("after", T0)
    engine = JourneyEngine([version(1)], deployments={("j", 1): published})
    assert [u for _, u, _ in sends(simulate(engine, before, after))] == ["after"]
    past = version(1, "enter_past_events: true\n")
    engine = JourneyEngine([past], deployments={("j", 1): published})
    assert [u for _, u, _ in sends(simulate(engine, before, after))] == ["before", "after"]


@pytest.mark.parametrize(
    ("head", "where", "expected"),
    [
        ("starts_at: tomorrow\n", "/starts_at", "a date-time with a time zone offset"),
        ("starts_at: 2026-11-02T09:00:00\n", "/starts_at", "a date-time with a time zone offset"),
        ("ends_at: 2026-11-02\n", "/ends_at", "a date-time with a time zone offset"),
        (
            "starts_at: 2026-11-02T09:00:00Z\nends_at: 2026-11-02T09:00:00Z\n",
            "/ends_at",
            "a time after starts_at",
        ),
        ("enter_past_events: yes please\n", "/enter_past_events", "true or false"),
    ],
)
def test_bad_entry_periods_are_located_errors(head: str, where: str, expected: str) -> None:
    with pytest.raises(JourneyError) as raised:
        version(1, head)
    assert raised.value.where == where and expected in raised.value.expected
