"""Exit criteria on attributes and time hold at every step, timer and message, not only when an
event arrives; and goals with `exit_on_conversion`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.engine import Analytics, JourneyEngine, Send, UserEvent, load_journey_text
from app.engine.simulator import Simulator

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def simulate(text: str, *events: UserEvent, days: int = 10) -> Simulator:
    simulator = Simulator(JourneyEngine([load_journey_text(text)]))
    simulator.feed(events)
    simulator.finish(timedelta(days=days))
    return simulator


def sends(simulator: Simulator) -> list[tuple[str, str]]:
    effects = [e.effect for e in simulator.effects]
    return [(e.user_id, e.step_id) for e in effects if isinstance(e, Send)]


def marks(simulator: Simulator, event: str) -> list[tuple[str, str | None]]:
    return [
        (f"{e.at:%m-%d %H:%M}", e.effect.reason)
        for e in simulator.effects
        if isinstance(e.effect, Analytics) and e.effect.event == event
    ]


PAST_36H = """
id: trial
version: 1
entry: {event: signed_up}
exit_when:
  - condition: {since_event: signed_up, at_least: 36h}
steps:
  hello: {type: message, channel: email, template: hello, next: wait}
  wait: {type: delay, duration: 100h, next: late}
  late: {type: message, channel: email, template: late}
"""


def test_an_exit_condition_that_comes_true_with_time_exits_before_the_next_message() -> None:
    simulator = simulate(PAST_36H, UserEvent("e1", "ada", "signed_up", T0))
    assert sends(simulator) == [("ada", "hello")]
    assert marks(simulator, "exited") == [
        ("11-06 13:00", "exit condition events.signed_up.last_at at least 1d12h ago")
    ]


def test_exit_conditions_are_checked_when_a_wait_times_out() -> None:
    text = """
id: j
version: 1
entry: {event: signed_up}
exit_when:
  - condition: {since_attribute: trial_ends_at, at_least: 0s}
steps:
  wait: {type: wait_for, event: opened_app, timeout: 1h, timed_out: nudge, performed: tip}
  nudge: {type: message, channel: email, template: nudge}
  tip: {type: message, channel: email, template: tip}
"""
    ends = {"trial_ends_at": "2026-11-02T09:30:00Z"}
    simulator = simulate(
        text,
        UserEvent("e1", "ada", "signed_up", T0, attributes=ends),
        UserEvent("e2", "bo", "signed_up", T0),
    )
    assert sends(simulator) == [("bo", "nudge")]
    assert marks(simulator, "exited") == [
        ("11-02 10:00", "exit condition attributes.trial_ends_at at least 0s ago")
    ]


def test_a_user_matching_an_exit_condition_at_entry_leaves_before_the_first_message() -> None:
    text = PAST_36H.replace(
        "{since_event: signed_up, at_least: 36h}", "{attribute: plan, equals: pro}"
    )
    pro = UserEvent("e1", "bo", "signed_up", T0, attributes={"plan": "pro"})
    simulator = simulate(text, pro, UserEvent("e2", "cy", "signed_up", T0))
    assert sends(simulator) == [("cy", "hello"), ("cy", "late")]
    assert marks(simulator, "exited") == [
        ("11-02 09:00", "exit condition attributes.plan $eq 'pro'")
    ]
