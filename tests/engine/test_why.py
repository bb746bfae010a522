"""The timeline explains why and why not: each yes/no answer, the path that won and the ones it
dropped, and every kind of non-entry, so "why didn't Ana get the reminder?" has an answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.engine import Analytics, JourneyEngine, Send, UserEvent, load_journey_text
from app.engine.simulator import Simulator

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def simulate(text: str, *events: UserEvent, days: int = 5) -> Simulator:
    simulator = Simulator(JourneyEngine([load_journey_text(text)]))
    simulator.feed(events)
    simulator.finish(timedelta(days=days))
    return simulator


def marks(simulator: Simulator, event: str) -> list[tuple[str, str | None, str | None]]:
    return [
        (e.effect.user_id, e.effect.step_id, e.effect.reason)
        for e in simulator.effects
        if isinstance(e.effect, Analytics) and e.effect.event == event
    ]


def event(n: int, user: str, name: str = "signed_up", **attributes: object) -> UserEvent:
    return UserEvent(f"e{n}", user, name, T0 + timedelta(minutes=n), attributes=attributes)


TEACHERS_ONCE = """
id: activation
version: 1
entry: {event: signed_up}
audience: {attribute: role, equals: teacher}
steps:
  has_class:
    type: branch
    if: {event: added_class, performed_at_least: 1}
    yes: no_action
    no: add_class
  add_class: {type: message, channel: email, template: add_your_class}
"""


def test_each_answer_of_a_decision_is_on_the_timeline_with_its_condition() -> None:
    simulator = simulate(
        TEACHERS_ONCE,
        event(1, "theo", "added_class", role="teacher"),
        event(2, "theo"),
        event(3, "tess", role="teacher"),
    )

    assert marks(simulator, "decided") == [
        ("theo", "has_class", "yes: events.added_class.count $gte 1"),
        ("tess", "has_class", "no: events.added_class.count $gte 1"),
    ]


def test_each_kind_of_non_entry_is_recorded_once_until_the_user_enters() -> None:
    simulator = simulate(
        TEACHERS_ONCE,
        event(1, "pam", role="parent"),
        event(2, "pam"),  # the same reason again: not recorded twice
        event(3, "tess", role="teacher"),
        event(4, "tess"),
        event(5, "tess"),
    )

    assert marks(simulator, "not_entered") == [
        ("pam", None, "not in the audience (attributes.role $eq 'teacher')"),
        ("tess", None, "re-entry blocked: entered once already (re_entry: once)"),
    ]
    assert [s.effect.user_id for s in simulator.effects if isinstance(s.effect, Send)] == ["tess"]


def test_a_journey_outside_its_dates_says_so() -> None:
    ended = TEACHERS_ONCE.replace("audience:", "ends_at: 2026-11-01T00:00:00Z\naudience:")

    simulator = simulate(ended, event(1, "tess", role="teacher"))

    assert marks(simulator, "not_entered") == [
        ("tess", None, "after the journey ended (2026-11-01 00:00 UTC)")
    ]


def test_the_path_that_won_and_the_paths_it_dropped() -> None:
    text = """
id: nudge
version: 1
entry: {event: signed_up}
steps:
  race:
    type: paths
    paths:
      - {id: fast, delay: 1h, if: {attribute: plan, equals: pro}, next: hello}
      - {id: slow, delay: 2h, next: hello}
      - {id: late, delay: 3h, next: hello}
  hello: {type: message, channel: email, template: hello}
"""
    simulator = simulate(text, event(1, "ana", plan="free"))

    assert marks(simulator, "path_skipped") == [
        ("ana", "race", "path fast: conditions did not hold when due")
    ]
    assert marks(simulator, "path_chosen") == [
        ("ana", "race", "path slow: first eligible when due")
    ]
    assert marks(simulator, "path_dropped") == [
        ("ana", "race", "path late: dropped, path slow won first")
    ]
