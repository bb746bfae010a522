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


CONVERTING = """
id: upsell
version: 1
entry: {event: signed_up}
holdout: 50
goal: {event: purchased, within: 3d, exit_on_conversion: true}
steps:
  variant:
    type: split
    branches:
      - {id: a, percent: 50, next: hello}
      - {id: b, percent: 50, next: hello}
  hello: {type: message, channel: email, template: hello, next: wait}
  wait: {type: delay, duration: 1d, next: reminder}
  reminder: {type: message, channel: email, template: reminder}
"""


def test_exit_on_conversion_exits_a_converted_user_and_the_default_goes_on() -> None:
    users = [f"u{i}" for i in range(40)]
    events = [UserEvent(f"s-{u}", u, "signed_up", T0) for u in users]
    events += [UserEvent(f"p-{u}", u, "purchased", T0 + timedelta(hours=2)) for u in users[:20]]
    exiting = simulate(CONVERTING, *events)
    staying = simulate(CONVERTING.replace(", exit_on_conversion: true", ""), *events)
    held = {e.effect.user_id for e in staying.effects if getattr(e.effect, "holdout", False)}
    messaged_buyers = set(users[:20]) - held
    assert messaged_buyers
    reminded = {user for user, step in sends(exiting) if step == "reminder"}
    assert reminded == set(users[20:]) - held
    assert {user for user, step in sends(staying) if step == "reminder"} == set(users) - held
    exits = [e.effect for e in exiting.effects if getattr(e.effect, "event", "") == "exited"]
    assert {e.reason for e in exits} == {"converted (purchased): exit on conversion"}
    assert not any(e.holdout for e in exits)  # a holdout entry completes as before


def test_conversions_carry_the_holdout_mark_and_the_split_variants() -> None:
    from app.engine.conversions import conversion_figures

    users = [f"u{i}" for i in range(60)]
    events = [UserEvent(f"s-{u}", u, "signed_up", T0) for u in users]
    events += [UserEvent(f"p-{u}", u, "purchased", T0 + timedelta(hours=2)) for u in users[:30]]
    simulator = simulate(CONVERTING, *events)
    analytics = [e.effect for e in simulator.effects if isinstance(e.effect, Analytics)]
    held = {a.user_id for a in analytics if a.event == "entered" and a.holdout}
    variant = {
        a.user_id: dict(a.variants)["variant"] for a in analytics if a.event == "path_chosen"
    }
    assert held and variant and not held & set(variant)
    for converted in (a for a in analytics if a.event == "converted"):
        assert converted.holdout == (converted.user_id in held)
        assert dict(converted.variants) == (
            {} if converted.holdout else {"variant": variant[converted.user_id]}
        )
    (figures,) = conversion_figures(a.to_record() for a in analytics).values()
    bought = set(users[:30])
    assert (figures.holdout.entered, figures.holdout.converted) == (len(held), len(held & bought))
    assert figures.messaged.entered == 60 - len(held)
    for branch, rate in figures.variants["variant"].items():
        chosen = {u for u, b in variant.items() if b == branch}
        assert (rate.entered, rate.converted) == (len(chosen), len(chosen & bought))


def test_a_conversion_after_the_entry_ended_counts_within_the_goal_window() -> None:
    """Messaged users are counted as holdout users are, over the whole goal window; before,
    an entry that ended with its last message stopped counting its conversions."""
    text = """
id: j
version: 1
entry: {event: signed_up}
goal: {event: purchased, within: 2d, properties: {sku: {prefix: la}}}
steps:
  hello: {type: message, channel: email, template: hello}
"""
    simulator = simulate(
        text,
        UserEvent("s1", "in-time", "signed_up", T0),
        UserEvent("p1", "in-time", "purchased", T0 + timedelta(days=1), properties={"sku": "lamp"}),
        UserEvent("s2", "other-sku", "signed_up", T0),
        UserEvent(
            "p2", "other-sku", "purchased", T0 + timedelta(days=1), properties={"sku": "rug"}
        ),
        UserEvent("s3", "late", "signed_up", T0),
        UserEvent("p3", "late", "purchased", T0 + timedelta(days=3), properties={"sku": "lamp"}),
    )
    converted = [
        (e.effect.user_id, f"{e.at:%m-%d}")
        for e in simulator.effects
        if isinstance(e.effect, Analytics) and e.effect.event == "converted"
    ]
    assert converted == [("in-time", "11-03")]
    # nothing of the finished entries' goals is left once their windows are over
    assert all("goals" not in record for record in simulator.states["late"].journeys.values())
