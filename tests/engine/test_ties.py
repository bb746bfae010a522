"""Ties: a window includes its end point, so an event at exactly a deadline counts as in time,
and at equal timestamps events are applied before timers (goal window, entry window, wait_for,
paths)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.engine import (
    Analytics,
    JourneyEngine,
    ScheduleTimer,
    Send,
    UserEvent,
    UserState,
    load_journey_text,
)
from app.engine.simulator import SimulatedEffect, Simulator

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def simulate(text: str, *events: UserEvent) -> list[SimulatedEffect]:
    simulator = Simulator(JourneyEngine([load_journey_text(text)]))
    simulator.feed(events)
    simulator.finish(timedelta(days=3))
    return simulator.effects


def sent(effects: list[SimulatedEffect]) -> list[str]:
    return [item.effect.step_id for item in effects if isinstance(item.effect, Send)]


def analytics(effects: list[SimulatedEffect]) -> list[str]:
    return [item.effect.event for item in effects if isinstance(item.effect, Analytics)]


def event(name: str, at: datetime, **extra: object) -> UserEvent:
    return UserEvent(f"{name}-{at:%H%M}", "u", name, at, **extra)  # type: ignore[arg-type]


def test_a_purchase_at_exactly_the_wait_for_timeout_counts_as_performed() -> None:
    text = (
        "id: cart\nversion: 1\nentry: {event: added_to_cart}\nsteps:\n"
        "  wait: {type: wait_for, event: purchased, timeout: 1h, performed: thanks,"
        " timed_out: remind}\n"
        "  thanks: {type: message, channel: email, template: thanks}\n"
        "  remind: {type: message, channel: email, template: remind}\n"
    )
    on_time = simulate(text, event("added_to_cart", T0), event("purchased", T0 + HOUR))
    assert sent(on_time) == ["thanks"]
    late = simulate(
        text, event("added_to_cart", T0), event("purchased", T0 + HOUR + timedelta(seconds=1))
    )
    assert sent(late) == ["remind"]


def test_a_goal_at_exactly_the_end_of_its_window_converts() -> None:
    text = (
        "id: g\nversion: 1\nentry: {event: signed_up}\nholdout: 100\n"
        "goal: {event: bought, within: 1h}\nsteps:\n"
        "  hello: {type: message, channel: email, template: hello}\n"
    )
    effects = simulate(text, event("signed_up", T0), event("bought", T0 + HOUR))
    assert analytics(effects) == ["entered", "converted", "completed"]
    late = simulate(text, event("signed_up", T0), event("bought", T0 + HOUR * 2))
    assert analytics(late) == ["entered", "completed"]


def test_an_entry_event_at_exactly_the_end_of_its_window_enters() -> None:
    text = (
        "id: w\nversion: 1\nentry: {event: added_class, within: 4h, of_event: signed_up}\n"
        "steps:\n  hello: {type: message, channel: email, template: hello}\n"
    )
    signed_up = event("signed_up", T0)
    assert sent(simulate(text, signed_up, event("added_class", T0 + 4 * HOUR))) == ["hello"]
    late = event("added_class", T0 + 4 * HOUR + timedelta(milliseconds=1))
    assert sent(simulate(text, signed_up, late)) == []


def test_an_attribute_set_at_exactly_a_paths_due_time_is_seen_by_its_conditions() -> None:
    text = (
        "id: p\nversion: 1\nentry: {event: signed_up}\nsteps:\n"
        "  choose:\n    type: paths\n    paths:\n"
        "      - {id: pro, delay: 1h, if: {attribute: plan, equals: pro}, next: pro_msg}\n"
        "      - {id: everyone, delay: 2h, next: bye}\n"
        "  pro_msg: {type: message, channel: email, template: pro}\n"
        "  bye: {type: message, channel: email, template: bye}\n"
    )
    upgraded = event("upgraded", T0 + HOUR, attributes={"plan": "pro"})
    assert sent(simulate(text, event("signed_up", T0), upgraded)) == ["pro_msg"]


def test_a_timer_an_input_sets_due_at_its_own_time_fires_within_that_input() -> None:
    """A path with no delay is taken by the input that reaches it, not by a timer of its own:
    such a timer would tie with the user's other timers due at that instant, and the workers
    (in the order their pump publishes) and the simulator (by timer id) would break the tie
    differently."""
    text = (
        "id: now\nversion: 1\nentry: {event: signed_up}\nsteps:\n"
        "  pick: {type: paths, paths: [{id: at_once, next: hello}]}\n"
        "  hello: {type: message, channel: email, template: hello}\n"
    )
    state = UserState.new("u")
    transition = JourneyEngine([load_journey_text(text)]).apply(state, event("signed_up", T0), T0)
    assert [e.step_id for e in transition.effects if isinstance(e, Send)] == ["hello"]
    assert not [e for e in transition.effects if isinstance(e, ScheduleTimer)]
    assert transition.state.timers == []
