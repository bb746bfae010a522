"""`journeys simulate` from the command line: jsonl lists every branch of a send, text names
them, and --received-at judges event times as a worker does."""

from __future__ import annotations

from pathlib import Path

import orjson
from click.testing import CliRunner

from app.cli import main

SPLITS = """
id: j
version: 1
entry: {event: signed_up}
steps:
  first:
    type: split
    branches:
      - {id: a, percent: 50, next: second}
      - {id: b, percent: 50, next: second}
  second:
    type: split
    branches:
      - {id: x, percent: 50, next: hello}
      - {id: y, percent: 50, next: hello}
  hello: {type: message, channel: email, template: first_tip}
"""
EVENT = {"event_id": "e1", "user_id": "ada", "name": "signed_up", "at": "2026-11-02T09:00:00Z"}


def simulate(tmp_path: Path, *options: str) -> tuple[int, str, str]:
    journey, events = tmp_path / "j.yaml", tmp_path / "events.jsonl"
    journey.write_text(SPLITS)
    events.write_bytes(orjson.dumps(EVENT) + b"\n")
    result = CliRunner().invoke(main, ["simulate", str(journey), "--events", str(events), *options])
    return result.exit_code, result.stdout, result.stderr


def test_jsonl_lists_every_branch_of_a_send_and_text_names_them(tmp_path: Path) -> None:
    code, out, _ = simulate(tmp_path, "--format", "jsonl")
    assert code == 0
    (send,) = [r for r in map(orjson.loads, out.splitlines()) if r["kind"] == "send"]
    assert [lock.rsplit(":", 1)[1] for lock, _ in send["branches"]] == ["first", "second"]
    chosen = [branch for _, branch in send["branches"]]
    code, out, _ = simulate(tmp_path)
    assert f"sent email 'first_tip' (branches {chosen[0]}, {chosen[1]})" in out


def test_received_at_refuses_an_event_a_worker_would_refuse(tmp_path: Path) -> None:
    code, out, err = simulate(tmp_path, "--received-at", "2026-11-02T09:04:00Z")
    assert code == 0 and "sent email 'first_tip'" in out and err == ""
    code, out, err = simulate(tmp_path, "--received-at", "2026-11-20T00:00:00")
    assert code == 0 and "sent email" not in out
    assert "refused event e1 of ada: event time 2026-11-02T09:00:00Z" in err
    assert "EVENT_MAX_PAST_SECONDS" in err
    code, _, err = simulate(tmp_path, "--received-at", "tomorrow")
    assert code == 2 and "not an ISO 8601 date-time" in err
