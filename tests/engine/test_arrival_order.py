"""Events apply in the order they arrive, each user on a clock of its own: the generated case
that found the simulator sorting each batch by time but not across batches (so feeding events
all at once and one by one disagreed), shrunk to a wait_for and two events out of order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.engine import JourneyEngine, Send, UserEvent, load_journey_text
from app.engine.simulator import Simulator

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
WAIT = """
id: activation
version: 1
entry: {event: signed_up}
steps:
  wait: {type: wait_for, event: added_class, timeout: 1h, performed: yes_msg, timed_out: no_msg}
  yes_msg: {type: message, channel: email, template: welcome}
  no_msg: {type: message, channel: email, template: add_your_class}
"""


def sent(batches: list[list[UserEvent]]) -> list[tuple[str, str]]:
    simulator = Simulator(JourneyEngine([load_journey_text(WAIT)]))
    for batch in batches:
        simulator.feed(batch)
    simulator.finish(timedelta(days=1))
    return [
        (e.effect.user_id, e.effect.step_id)
        for e in simulator.effects
        if isinstance(e.effect, Send)
    ]


def test_out_of_order_events_give_one_result_however_they_are_batched() -> None:
    events = [
        UserEvent("e1", "u", "added_class", T0 + timedelta(minutes=5)),
        UserEvent("e2", "u", "signed_up", T0),
    ]
    all_at_once = sent([events])
    one_by_one = sent([[e] for e in events])
    # The class was added before the sign-up arrived: the wait sees no later class and times out.
    assert all_at_once == one_by_one == [("u", "no_msg")]


def test_a_file_grouped_by_user_gives_the_result_of_one_sorted_by_time() -> None:
    ana = [
        UserEvent("a1", "ana", "signed_up", T0),
        UserEvent("a2", "ana", "added_class", T0 + timedelta(minutes=30)),
    ]
    bo = [
        UserEvent("b1", "bo", "signed_up", T0 - timedelta(days=1)),
        UserEvent("b2", "bo", "added_class", T0 - timedelta(days=1) + timedelta(minutes=50)),
    ]
    grouped = sent([ana + bo])
    by_time = sent([sorted(ana + bo, key=lambda e: e.at)])
    assert sorted(grouped) == sorted(by_time) == [("ana", "yes_msg"), ("bo", "yes_msg")]


def test_an_event_arriving_after_its_users_timer_fired_applies_after_it() -> None:
    simulator = Simulator(JourneyEngine([load_journey_text(WAIT)]))
    simulator.feed([UserEvent("e1", "u", "signed_up", T0)])
    simulator.run_until(T0 + timedelta(hours=2))  # the wait timed out
    simulator.feed([UserEvent("e2", "u", "added_class", T0 + timedelta(minutes=10))])
    simulator.finish(timedelta(days=1))
    assert [e.effect.step_id for e in simulator.effects if isinstance(e.effect, Send)] == ["no_msg"]
