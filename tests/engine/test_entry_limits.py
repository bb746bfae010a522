"""Entry limits: the engine asks for a slot, the shell answers, the same input applies again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.engine import (
    Analytics,
    JourneyEngine,
    JourneyError,
    Transition,
    UserEvent,
    UserState,
    load_journey_text,
)
from app.engine.entry_limits import EntryLedger
from app.engine.simulator import Simulator

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
LIMITED = """
id: j
version: 1
entry: {event: signed_up}
re_entry: every_time
entry_limits: {per_minute: 2, total: 5}
steps:
  hello: {type: message, channel: email, template: hello}
"""


def signed_up(user: str, seconds: int) -> UserEvent:
    return UserEvent(f"{user}-{seconds}", user, "signed_up", T0 + timedelta(seconds=seconds))


def outcomes(simulator: Simulator) -> list[tuple[str, str, str]]:
    return [
        (f"{e.at:%H:%M:%S}", e.effect.user_id, e.effect.event)
        for e in simulator.effects
        if isinstance(e.effect, Analytics) and e.effect.event in ("entered", "entry_limited")
    ]


def test_per_minute_and_total_limits_admit_in_the_order_inputs_apply() -> None:
    simulator = Simulator(JourneyEngine([load_journey_text(LIMITED)]))
    simulator.feed(
        [signed_up(u, s) for u, s in (("a", 0), ("b", 10), ("c", 20), ("d", 59), ("e", 60))]
        + [signed_up(u, 60 + s) for u, s in (("f", 1), ("g", 2))]
        + [signed_up(u, 120 + s) for u, s in (("h", 0), ("i", 1), ("a", 2))]
    )
    assert outcomes(simulator) == [
        ("09:00:00", "a", "entered"),
        ("09:00:10", "b", "entered"),
        ("09:00:20", "c", "entry_limited"),  # 2 per minute
        ("09:00:59", "d", "entry_limited"),
        ("09:01:00", "e", "entered"),  # a new minute
        ("09:01:01", "f", "entered"),
        ("09:01:02", "g", "entry_limited"),
        ("09:02:00", "h", "entered"),  # the fifth entry ever
        ("09:02:01", "i", "entry_limited"),  # 5 in total
        ("09:02:02", "a", "entry_limited"),
    ]
    limited = [
        e.effect for e in simulator.effects if getattr(e.effect, "event", "") == "entry_limited"
    ]
    assert {e.reason for e in limited} == {"entry limit reached (2 per minute and 5 in total)"}


def kinds(transition: Transition) -> list[str]:
    return [e.event if isinstance(e, Analytics) else "send" for e in transition.effects]


def test_the_engine_asks_and_a_transition_with_answers_enters_or_refuses() -> None:
    engine = JourneyEngine([load_journey_text(LIMITED)])
    state, event = UserState.new("ada"), signed_up("ada", 0)
    asked = engine.apply(state, event, T0)
    (slot,) = asked.asks
    assert slot.journey_id == "j" and slot.minute == T0 and slot.grant_id == "j|ada|event:ada-0"
    assert asked.effects == [] and not asked.state.active_entries()
    granted = engine.apply(state, event, T0, {slot.grant_id: True})
    assert granted.asks == () and kinds(granted) == ["entered", "send", "completed"]
    refused = engine.apply(state, event, T0, {slot.grant_id: False})
    assert refused.asks == () and kinds(refused) == ["entry_limited"]
    # a refused user is no entered user: re-entry `once` still lets them in later
    once = load_journey_text(LIMITED.replace("re_entry: every_time", "re_entry: once"))
    later = JourneyEngine([once]).apply(
        refused.state, signed_up("ada", 90), T0, {"j|ada|event:ada-90": True}
    )
    assert kinds(later) == ["entered", "send", "completed"]


def test_a_grant_id_keeps_its_answer_so_a_replay_spends_no_second_slot() -> None:
    engine = JourneyEngine([load_journey_text(LIMITED)])
    ledger = EntryLedger()
    (slot,) = engine.apply(UserState.new("ada"), signed_up("ada", 0), T0).asks
    assert ledger.grant([slot]) == {slot.grant_id: True}
    assert ledger.grant([slot, slot]) == {slot.grant_id: True}
    assert ledger.ever["j"] == 1 and ledger.in_minute[("j", T0)] == 1


def test_audience_and_re_entry_are_checked_before_a_slot_is_spent() -> None:
    text = LIMITED.replace("re_entry: every_time", "re_entry: once").replace(
        "entry_limits:", "audience: {attribute: plan, equals: pro}\nentry_limits:"
    )
    simulator = Simulator(JourneyEngine([load_journey_text(text)]))
    free = UserEvent("f", "free", "signed_up", T0, attributes={"plan": "free"})
    pro = [UserEvent(f"p{i}", "pro", "signed_up", T0, attributes={"plan": "pro"}) for i in (1, 2)]
    other = UserEvent("o", "other", "signed_up", T0, attributes={"plan": "pro"})
    simulator.feed([free, *pro, other])
    assert outcomes(simulator) == [("09:00:00", "pro", "entered"), ("09:00:00", "other", "entered")]
    assert simulator.ledger.ever["j"] == 2


@pytest.mark.parametrize(
    ("limits", "where", "expected"),
    [
        ("{}", "/entry_limits", "per_minute, total or both"),
        ("{per_minute: 0}", "/entry_limits/per_minute", "a whole number from 1"),
        ("{total: 2.5}", "/entry_limits/total", "a whole number from 1"),
        ("10", "/entry_limits", "a mapping"),
    ],
)
def test_bad_entry_limits_are_located_errors(limits: str, where: str, expected: str) -> None:
    with pytest.raises(JourneyError) as error:
        load_journey_text(LIMITED.replace("{per_minute: 2, total: 5}", limits))
    assert error.value.where == where and error.value.expected == expected
