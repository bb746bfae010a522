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
  hello: {type: message, channel: email, template: hello, next: wait}
  wait: {type: delay, duration: 100h, next: late}
  late: {type: message, channel: email, template: late}
"""
    records = simulate(tmp_path, journey, [event("e1", "ada", "signed_up", "2026-11-02T09:00:00Z")])
    assert sent(records) == [("ada", "hello")]
    (exited,) = [r for r in records if r["kind"] == "exited"]
    assert exited["at"] == "2026-11-06T13:00:00Z" and "exit condition" in exited["reason"]
