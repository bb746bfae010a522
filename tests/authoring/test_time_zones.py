"""A time zone no machine knows never becomes UTC silently: in a journey or rules file it is an
error; in a user's `timezone` the event applies, the zone is refused (said on stderr, as a
worker's dead letter says it) and the user keeps the last valid zone."""

from __future__ import annotations

from pathlib import Path

import orjson
from click.testing import CliRunner

from app.cli import main

MORNING = """\
id: morning
version: 1
entry: {event: signed_up}
steps:
  wait: {type: delay, until_time: "09:00", next: hello}
  hello: {type: message, channel: email, template: welcome}
"""


def test_a_user_keeps_the_last_valid_zone_when_an_event_brings_an_unknown_one(
    tmp_path: Path,
) -> None:
    journey, events = tmp_path / "j.yaml", tmp_path / "e.jsonl"
    journey.write_text(MORNING)
    first = {"event_id": "e1", "user_id": "ada", "name": "visited", "at": "2026-11-02T10:00:00Z",
             "timezone": "America/New_York", "attributes": {"first_name": "Ada"}}  # fmt: skip
    second = {"event_id": "e2", "user_id": "ada", "name": "signed_up",
              "at": "2026-11-02T12:00:00Z", "timezone": "America/LosAngeles"}  # fmt: skip
    events.write_bytes(b"\n".join(map(orjson.dumps, (first, second))))
    args = ["simulate", str(journey), "--events", str(events), "--format", "jsonl"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    (send,) = [r for r in map(orjson.loads, result.stdout.splitlines()) if r["kind"] == "send"]
    assert send["at"] == "2026-11-02T14:00:00Z"  # 09:00 in New York, not in UTC
    assert result.stderr == (
        "refused the timezone of event e2 of ada: a time zone this machine does not know "
        "(the event was applied; the user keeps their last valid zone)\n"
    )


def test_a_time_zone_in_a_journey_or_rules_file_is_an_error(tmp_path: Path) -> None:
    journey, rules = tmp_path / "j.yaml", tmp_path / "r.yaml"
    journey.write_text(MORNING + "timezone: America/LosAngeles\n")
    rules.write_text(
        "kind: rules\nversion: 1\n"
        "quiet_hours: {start: '21:00', end: '08:00', timezone: America/LosAngeles}\n"
    )
    result = CliRunner().invoke(main, ["validate", str(journey), str(rules)])
    assert result.exit_code == 1
    lines = result.output.replace(str(tmp_path), "").splitlines()
    assert [line.split(", expected")[0] for line in lines] == [
        "/j.yaml:7: at /timezone: found an unknown key 'timezone'",
        "/r.yaml:3: at /quiet_hours/timezone: found an unknown key 'timezone'",
    ]
