"""`since_entry` conditions (performed since entering, changed since entering) and event
property filters beyond equality, in the engine and the loader."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.engine import JourneyEngine, JourneyError, Send, UserEvent, load_journey_text
from app.engine.simulator import Simulator

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def sends(text: str, *events: UserEvent) -> list[tuple[str, str]]:
    simulator = Simulator(JourneyEngine([load_journey_text(text)]))
    simulator.feed(events)
    simulator.finish(timedelta(days=5))
    return sorted(
        (e.effect.user_id, e.effect.step_id)
        for e in simulator.effects
        if isinstance(e.effect, Send)
    )


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


SINCE_ENTRY = """
id: j
version: 1
entry: {event: added_to_cart}
re_entry: every_time
steps:
  wait: {type: delay, duration: 1h, next: check}
  check:
    type: branch
    if: {any: [{event: purchased, since_entry: true}, {attribute: plan, changed_since_entry: true}]}
    yes: thanks
    no: nudge
  thanks: {type: message, channel: email, template: thanks}
  nudge: {type: message, channel: email, template: nudge}
"""


def test_performed_and_changed_since_entering_count_only_what_came_after_the_entry() -> None:
    events = [
        # bought before entering: the purchase does not count for this entry
        UserEvent("b1", "before", "purchased", at(-30)),
        UserEvent("b2", "before", "added_to_cart", at(0), attributes={"plan": "pro"}),
        # bought after entering
        UserEvent("a1", "after", "added_to_cart", at(0)),
        UserEvent("a2", "after", "purchased", at(10)),
        # upgraded after entering (the update at entry itself does not count)
        UserEvent("c1", "changed", "added_to_cart", at(0), attributes={"plan": "free"}),
        UserEvent("c2", "changed", "opened_app", at(20), attributes={"plan": "pro"}),
        # the same value again is no change
        UserEvent("s1", "same", "added_to_cart", at(0), attributes={"plan": "free"}),
        UserEvent("s2", "same", "opened_app", at(20), attributes={"plan": "free"}),
    ]
    assert sends(SINCE_ENTRY, *events) == [
        ("after", "thanks"),
        ("before", "nudge"),
        ("changed", "thanks"),
        ("same", "nudge"),
    ]


def test_since_entry_refers_to_each_entry_of_a_user() -> None:
    """Two entries of one user: a purchase between them counts for the first only."""
    events = [
        UserEvent("e1", "ada", "added_to_cart", at(0)),
        UserEvent("p1", "ada", "purchased", at(10)),
        UserEvent("e2", "ada", "added_to_cart", at(20)),
    ]
    simulator = Simulator(JourneyEngine([load_journey_text(SINCE_ENTRY)]))
    simulator.feed(events)
    simulator.finish(timedelta(days=1))
    got = [
        (f"{e.at:%H:%M}", e.effect.step_id) for e in simulator.effects if isinstance(e.effect, Send)
    ]
    assert got == [("10:00", "thanks"), ("10:20", "nudge")]


OPERATORS = """
id: j
version: 1
entry:
  event: purchased
  properties:
    quantity: {gte: 2}
    sku: {in: [lamp, rug]}
    coupon: {exists: true}
    note: {contains: gift}
    source: {prefix: ios}
steps:
  hello: {type: message, channel: email, template: hello}
"""


@pytest.mark.parametrize(
    ("properties", "enters"),
    [
        (
            {"quantity": 2, "sku": "lamp", "coupon": None, "note": "a gift!", "source": "ios-17"},
            True,
        ),
        ({"quantity": 3.5, "sku": "rug", "coupon": "X", "note": "gift", "source": "ios"}, True),
        ({"quantity": 1, "sku": "lamp", "coupon": "X", "note": "gift", "source": "ios"}, False),
        ({"quantity": "2", "sku": "lamp", "coupon": "X", "note": "gift", "source": "ios"}, False),
        ({"quantity": 2, "sku": "desk", "coupon": "X", "note": "gift", "source": "ios"}, False),
        ({"quantity": 2, "sku": "lamp", "note": "gift", "source": "ios"}, False),
        ({"quantity": 2, "sku": "lamp", "coupon": 1, "note": "Gift", "source": "ios"}, False),
        ({"quantity": 2, "sku": "lamp", "coupon": 1, "note": ["gift"], "source": "ios"}, True),
        ({"quantity": 2, "sku": "lamp", "coupon": 1, "note": "gift", "source": "web-ios"}, False),
    ],
)
def test_property_operators_filter_entries(properties: dict, enters: bool) -> None:
    event = UserEvent("e1", "ada", "purchased", T0, properties=properties)
    assert sends(OPERATORS, event) == ([("ada", "hello")] if enters else [])


@pytest.mark.parametrize(
    ("fragment", "where", "expected"),
    [
        ("audience: {event: purchased, since_entry: true}\n", "/audience", "without them"),
        (
            "exit_when:\n  - condition: {attribute: plan, changed_since_entry: false}\n",
            "/exit_when/0/condition/changed_since_entry",
            "true",
        ),
        (
            "goal: {event: purchased, within: 1d, properties: {sku: {starts: a}}}\n",
            "/goal/properties/sku/starts",
            "contains or prefix",
        ),
        (
            "goal: {event: purchased, within: 1d, properties: {sku: {prefix: 3}}}\n",
            "/goal/properties/sku/prefix",
            "a string",
        ),
        (
            "goal: {event: purchased, within: 1d, properties: {sku: {in: a, gt: 1}}}\n",
            "/goal/properties/sku",
            "one operator",
        ),
        (
            "goal: {event: purchased, within: 1d, exit_on_conversion: yes please}\n",
            "/goal/exit_on_conversion",
            "true or false",
        ),
    ],
)
def test_bad_new_options_are_located_errors(fragment: str, where: str, expected: str) -> None:
    text = f"id: j\nversion: 1\nentry: {{event: signed_up}}\n{fragment}steps:\n"
    text += "  hello: {type: message, channel: email, template: hello}\n"
    with pytest.raises(JourneyError) as error:
        load_journey_text(text)
    assert error.value.where == where and expected in error.value.expected
