"""`journeys simulate` applies the journey options of conversion, exits, conditions and entry
limits the way the workers do: each test fails without the rule it names."""

from __future__ import annotations

from pathlib import Path

import orjson
from click.testing import CliRunner

from app.cli import main


def simulate(tmp_path: Path, journey: str, events: list[dict]) -> list[dict]:
    """The jsonl records `journeys simulate` prints for one journey file and its events."""
    journey_file, events_file = tmp_path / "j.yaml", tmp_path / "events.jsonl"
    journey_file.write_text(journey)
    events_file.write_bytes(b"".join(orjson.dumps(event) + b"\n" for event in events))
    result = CliRunner().invoke(
        main, ["simulate", str(journey_file), "--events", str(events_file), "--format", "jsonl"]
    )
    assert result.exit_code == 0, result.output
    return [orjson.loads(line) for line in result.stdout.splitlines()]


def event(event_id: str, user: str, name: str, at: str, **extra: object) -> dict:
    return {"event_id": event_id, "user_id": user, "name": name, "at": at, **extra}


def sent(records: list[dict]) -> list[tuple[str, str]]:
    return [(r["user"], r["step"]) for r in records if r["kind"] == "send"]


def test_an_exit_condition_on_time_exits_before_a_message_100h_in(tmp_path: Path) -> None:
    journey = """
id: trial
version: 1
entry: {event: signed_up}
exit_when:
  - condition: {since_event: signed_up, at_least: 36h}
steps:
  hello: {type: message, channel: email, template: welcome, next: wait}
  wait: {type: delay, duration: 100h, next: late}
  late: {type: message, channel: email, template: first_tip}
"""
    records = simulate(tmp_path, journey, [event("e1", "ada", "signed_up", "2026-11-02T09:00:00Z")])
    assert sent(records) == [("ada", "hello")]
    (exited,) = [r for r in records if r["kind"] == "exited"]
    assert exited["at"] == "2026-11-06T13:00:00Z" and "exit condition" in exited["reason"]


CONVERTING = """
id: upsell
version: 1
entry: {event: signed_up}
goal: {event: purchased, within: 3d, exit_on_conversion: true}
steps:
  variant:
    type: split
    branches:
      - {id: a, percent: 50, next: hello}
      - {id: b, percent: 50, next: hello}
  hello: {type: message, channel: email, template: welcome, next: wait}
  wait: {type: delay, duration: 1d, next: reminder}
  reminder: {type: message, channel: email, template: cart_reminder}
"""


def test_a_converted_user_exits_and_conversions_are_counted_per_variant(tmp_path: Path) -> None:
    events = [
        event("s1", "ada", "signed_up", "2026-11-02T09:00:00Z"),
        event("s2", "bo", "signed_up", "2026-11-02T09:00:00Z"),
        event("p1", "ada", "purchased", "2026-11-02T12:00:00Z"),
    ]
    records = simulate(tmp_path, CONVERTING, events)
    assert sent(records) == [("ada", "hello"), ("bo", "hello"), ("bo", "reminder")]
    (converted,) = [r for r in records if r["kind"] == "converted"]
    assert converted["variants"] == {"variant": "b"}  # the split sends ada down b, bo down a
    assert [r["reason"] for r in records if r["user"] == "ada" and r["kind"] == "exited"] == [
        "converted (purchased): exit on conversion"
    ]
    text = CliRunner().invoke(
        main, ["simulate", str(tmp_path / "j.yaml"), "--events", str(tmp_path / "events.jsonl")]
    )
    assert (
        "upsell v1: converted/entered messaged 1/2; holdout 0/0; variant=a 0/1; variant=b 1/1"
        in text.stdout
    )


def test_since_entry_and_property_operators(tmp_path: Path) -> None:
    journey = """
id: cart
version: 1
entry: {event: added_to_cart, properties: {quantity: {gte: 2}, sku: {prefix: lamp}}}
steps:
  wait: {type: delay, duration: 1h, next: check}
  check:
    type: branch
    if: {event: purchased, since_entry: true}
    yes: thanks
    no: nudge
  thanks: {type: message, channel: email, template: class_added}
  nudge: {type: message, channel: email, template: browse_reminder}
"""
    cart = {"quantity": 2, "sku": "lamp-xl"}
    events = [
        event("b0", "bo", "purchased", "2026-11-02T08:00:00Z"),
        event("b1", "bo", "added_to_cart", "2026-11-02T09:00:00Z", properties=cart),
        event("a1", "ada", "added_to_cart", "2026-11-02T09:00:00Z", properties=cart),
        event("a2", "ada", "purchased", "2026-11-02T09:30:00Z"),
        event("c1", "cy", "added_to_cart", "2026-11-02T09:00:00Z", properties={"quantity": 1}),
    ]
    assert sorted(sent(simulate(tmp_path, journey, events))) == [
        ("ada", "thanks"),
        ("bo", "nudge"),
    ]


def test_entry_limits_refuse_entries_past_the_cap(tmp_path: Path) -> None:
    journey = """
id: promo
version: 1
entry: {event: signed_up}
entry_limits: {per_minute: 1, total: 2}
steps:
  hello: {type: message, channel: email, template: welcome}
"""
    events = [
        event("a", "ada", "signed_up", "2026-11-02T09:00:00Z"),
        event("b", "bo", "signed_up", "2026-11-02T09:00:30Z"),
        event("c", "cy", "signed_up", "2026-11-02T09:01:00Z"),
        event("d", "di", "signed_up", "2026-11-02T09:02:00Z"),
    ]
    records = simulate(tmp_path, journey, events)
    assert sent(records) == [("ada", "hello"), ("cy", "hello")]
    assert [(r["user"], r["reason"]) for r in records if r["kind"] == "entry_limited"] == [
        ("bo", "entry limit reached (1 per minute and 2 in total)"),
        ("di", "entry limit reached (1 per minute and 2 in total)"),
    ]
