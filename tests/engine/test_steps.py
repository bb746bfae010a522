"""Scenario tests per step kind and rule, with exact expected timelines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.engine import (
    JourneyEngine,
    JourneyError,
    Send,
    TimerFired,
    UserEvent,
    UserState,
    load_journey_text,
)
from app.engine.simulator import Simulator

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def journey(steps: str, head: str = "entry: {event: signed_up}\n") -> str:
    return f"id: j\nversion: 1\n{head}steps:\n{steps}"


def run(text: str, *events: UserEvent, days: int = 10, rules=None) -> list[tuple[str, str, str]]:
    simulator = Simulator(JourneyEngine([load_journey_text(text)], rules))
    simulator.feed(events)
    simulator.finish(timedelta(days=days))
    return [
        (f"{item.at:%m-%d %H:%M}", item.effect.user_id, item.effect.step_id)
        for item in simulator.effects
        if isinstance(item.effect, Send)
    ]


def signed_up(user: str, at: datetime = T0, **extra) -> UserEvent:
    return UserEvent(f"{user}-signup-{at:%H%M}", user, "signed_up", at, **extra)


def test_delay_until_time_of_day_in_the_users_zone() -> None:
    text = journey(
        "  wait: {type: delay, until_time: '09:30', next: hello}\n"
        "  hello: {type: message, channel: email, template: hello}\n"
    )
    assert run(text, signed_up("tokyo", timezone="Asia/Tokyo"), signed_up("utc")) == [
        ("11-02 09:30", "utc", "hello"),
        ("11-03 00:30", "tokyo", "hello"),  # 09:30 in Tokyo
    ]


def test_delay_until_a_date_attribute() -> None:
    text = journey(
        "  wait: {type: delay, until_attribute: trial_ends_at, next: hello}\n"
        "  hello: {type: message, channel: email, template: trial_over}\n"
    )
    event = signed_up("u", attributes={"trial_ends_at": "2026-11-05T12:00:00Z"})
    assert run(text, event) == [("11-05 12:00", "u", "hello")]


def test_split_is_deterministic_per_user_and_entry_and_near_its_percentages() -> None:
    text = journey(
        "  ab:\n    type: split\n    branches:\n"
        "      - {id: a, percent: 30, next: msg_a}\n"
        "      - {id: b, percent: 70, next: msg_b}\n"
        "  msg_a: {type: message, channel: email, template: a}\n"
        "  msg_b: {type: message, channel: email, template: b}\n"
    )
    events = [signed_up(f"user-{i}") for i in range(1000)]
    first, second = run(text, *events), run(text, *events)
    assert first == second
    share_a = sum(1 for _, _, step in first if step == "msg_a") / len(first)
    assert 0.25 < share_a < 0.35


def test_exit_step_and_exit_event_stop_an_entry() -> None:
    text = journey(
        "  wait: {type: delay, duration: 1h, next: hello}\n"
        "  hello: {type: message, channel: email, template: hello, next: done}\n"
        "  done: {type: exit}\n",
        head="entry: {event: signed_up}\nexit_when:\n  - event: deleted_account\n",
    )
    deleted = UserEvent("d", "leaver", "deleted_account", T0 + timedelta(minutes=30))
    assert run(text, signed_up("stayer"), signed_up("leaver"), deleted) == [
        ("11-02 10:00", "stayer", "hello")
    ]


def test_holdout_users_enter_but_get_no_message() -> None:
    text = journey(
        "  hello: {type: message, channel: email, template: hello}\n",
        head="entry: {event: signed_up}\nholdout: 20\n",
    )
    simulator = Simulator(JourneyEngine([load_journey_text(text)]))
    simulator.feed(signed_up(f"user-{i}") for i in range(500))
    entered = [e.effect for e in simulator.effects if getattr(e.effect, "event", "") == "entered"]
    held_out = {e.user_id for e in entered if e.reason and "holdout" in e.reason}
    sent = {e.effect.user_id for e in simulator.effects if isinstance(e.effect, Send)}
    assert len(entered) == 500
    assert 60 < len(held_out) < 140
    assert not held_out & sent and len(sent) == 500 - len(held_out)


def test_frequency_cap_across_journeys_suppresses_with_the_reason() -> None:
    first = journey("  hello: {type: message, channel: push, template: a}\n")
    second = first.replace("id: j", "id: k").replace("template: a", "template: b")
    capped = "frequency_caps:\n  - {channel: push, limit: 1, window: 1d}\n"
    engine = JourneyEngine(
        [load_journey_text(first), load_journey_text(capped + second)],
    )
    transition = engine.apply(UserState.new("u"), signed_up("u"), T0)
    sends = [e for e in transition.effects if isinstance(e, Send)]
    suppressed = [e for e in transition.effects if getattr(e, "event", "") == "suppressed"]
    assert [s.template_id for s in sends] == ["a"]
    assert suppressed[0].reason == "frequency cap 1 per 1d on push"


def test_unsubscribed_channel_is_never_sent() -> None:
    text = journey("  hello: {type: message, channel: email, template: hello}\n")
    event = signed_up("u", subscriptions={"email": False})
    assert run(text, event) == []


def test_paths_with_no_eligible_path_exit_the_entry() -> None:
    text = journey(
        "  choose:\n    type: paths\n    paths:\n"
        "      - {id: pro, delay: 1h, if: {attribute: plan, equals: pro}, next: hello}\n"
        "  hello: {type: message, channel: email, template: hello}\n"
    )
    simulator = Simulator(JourneyEngine([load_journey_text(text)]))
    simulator.feed([signed_up("u")])
    simulator.finish()
    kinds = [getattr(e.effect, "event", None) for e in simulator.effects]
    assert "exited" in kinds and not any(isinstance(e.effect, Send) for e in simulator.effects)


def test_an_applied_input_changes_nothing_and_unknown_timers_are_ignored() -> None:
    engine = JourneyEngine(
        [load_journey_text(journey("  hello: {type: message, channel: email, template: h}\n"))]
    )
    first = engine.apply(UserState.new("u"), signed_up("u"), T0)
    again = engine.apply(first.state, signed_up("u"), T0 + timedelta(hours=1))
    assert again.effects == [] and again.state is first.state
    stray = engine.apply(first.state, TimerFired("u", "j:1:u:nope:x:delay", T0), T0)
    assert [e for e in stray.effects if isinstance(e, Send)] == []


def test_state_round_trips_through_its_document() -> None:
    engine = JourneyEngine(
        [
            load_journey_text(
                journey(
                    "  wait: {type: wait_for, event: bought, timeout: 1h, timed_out: nudge}\n"
                    "  nudge: {type: message, channel: push, template: n}\n"
                )
            )
        ]
    )
    state = engine.apply(
        UserState.new("u"), signed_up("u", attributes={"since": "2026-01-01T00:00:00Z"}), T0
    ).state
    assert UserState.from_document(state.to_document()) == state


@pytest.mark.parametrize(
    ("text", "line", "where", "expected"),
    [
        ("id: j\nversion: 0\n", 2, "/version", "a whole number from 1"),
        (journey("  a: {type: teleport}\n"), 5, "/steps/a/type", "delay, message, branch"),
        (journey("  a: {type: delay, duration: soon, next: b}\n"), 5, "/steps/a/duration", "90s"),
        (journey("  a: {type: delay, duration: 1h, next: a}\n"), 5, "/steps/a", "without cycles"),
        (
            journey("  a: {type: message, channel: fax, template: t}\n"),
            5,
            "/steps/a/channel",
            "email",
        ),
        (
            journey("  a: {type: branch, if: {attribute: x, near: 1}, yes: a, no: a}\n"),
            5,
            "/steps/a/if/near",
            "equals, not_equals",
        ),
    ],
)
def test_errors_name_file_line_path_found_and_expected(text, line, where, expected) -> None:
    with pytest.raises(JourneyError) as caught:
        load_journey_text(text, "journeys/j.yaml")
    message = str(caught.value)
    assert message.startswith(f"journeys/j.yaml:{line}: at {where}")
    assert expected in message and "found" in message


def test_entries_at_the_same_millisecond_get_their_own_dispatch_ids() -> None:
    text = journey(
        "  hello: {type: message, channel: email, template: hello}\n",
        head="entry: {event: ping}\nre_entry: every_time\n",
    )
    engine = JourneyEngine([load_journey_text(text)])
    state, ids = UserState.new("u"), []
    for event_id in ("p1", "p2"):
        transition = engine.apply(state, UserEvent(event_id, "u", "ping", T0), T0)
        state = transition.state
        ids += [e.dispatch_id for e in transition.effects if isinstance(e, Send)]
    assert len(ids) == 2 and ids[0] != ids[1]


def test_a_topic_opt_out_suppresses_that_topics_messages_with_the_reason() -> None:
    text = journey(
        "  news: {type: message, channel: email, template: hello, topic: product_updates,"
        " next: tip}\n"
        "  tip: {type: message, channel: email, template: tip, topic: tips}\n"
    )
    engine = JourneyEngine([load_journey_text(text)])
    event = signed_up("u", topics={"product_updates": False})
    effects = engine.apply(UserState.new("u"), event, T0).effects
    sends = [e for e in effects if isinstance(e, Send)]
    suppressed = [e for e in effects if getattr(e, "event", "") == "suppressed"]
    assert [(s.template_id, s.topic, s.transactional) for s in sends] == [("tip", "tips", False)]
    assert sends[0].to_record()["topic"] == "tips"
    assert [(e.step_id, e.reason) for e in suppressed] == [
        ("news", "unsubscribed from product_updates")
    ]


def test_a_transactional_journey_marks_its_sends_and_refuses_topics() -> None:
    text = "transactional: true\n" + journey(
        "  receipt: {type: message, channel: email, template: hello}\n"
    )
    (send,) = [
        e
        for e in JourneyEngine([load_journey_text(text)])
        .apply(UserState.new("u"), signed_up("u", topics={"product_updates": False}), T0)
        .effects
        if isinstance(e, Send)
    ]
    assert send.transactional and send.to_record()["transactional"] is True
    with pytest.raises(JourneyError, match="no topic in a transactional journey"):
        load_journey_text(text.replace("template: hello", "template: hello, topic: news"))


def test_a_condition_tests_topic_subscription() -> None:
    text = journey(
        "  ask:\n    type: branch\n    if: {subscribed_topic: weekly_summary}\n"
        "    yes: hello\n    no: no_action\n"
        "  hello: {type: message, channel: push, template: hello}\n"
    )
    assert run(text, signed_up("a"), signed_up("b", topics={"weekly_summary": False})) == [
        ("11-02 09:00", "a", "hello")
    ]
    with pytest.raises(JourneyError, match="did you mean `topic`"):
        load_journey_text(text.replace("template: hello", "template: hello, topik: x"))
