"""`journeys simulate` applies the journey's entry period as the workers do: `starts_at` and
`ends_at` from the file, and with `--published-at`, no entry for events from before the
journey's first publication unless the file says `enter_past_events: true`."""

from __future__ import annotations

from pathlib import Path

import orjson
from click.testing import CliRunner

from app.cli import main

JOURNEY = """
id: launch
version: 1
entry: {event: signed_up}
steps:
  hello: {type: message, channel: email, template: first_tip}
"""
EVENTS = [
    {"event_id": f"e-{user}", "user_id": user, "name": "signed_up", "at": at}
    for user, at in (("ada", "2026-11-02T08:00:00Z"), ("bo", "2026-11-02T10:00:00Z"))
]


def sent_to(tmp_path: Path, head: str, *options: str) -> list[str]:
    journey, events = tmp_path / "j.yaml", tmp_path / "events.jsonl"
    journey.write_text(JOURNEY + head)
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in EVENTS))
    result = CliRunner().invoke(
        main, ["simulate", str(journey), "--events", str(events), "--format", "jsonl", *options]
    )
    assert result.exit_code == 0, result.output
    records = [orjson.loads(line) for line in result.stdout.splitlines()]
    return [r["user"] for r in records if r["kind"] == "send"]


def test_published_at_leaves_out_events_from_before_the_publication(tmp_path: Path) -> None:
    assert sent_to(tmp_path, "") == ["ada", "bo"]  # by default: published before every event
    assert sent_to(tmp_path, "", "--published-at", "2026-11-02T09:00:00") == ["bo"]
    past = "enter_past_events: true\n"
    assert sent_to(tmp_path, past, "--published-at", "2026-11-02T09:00:00Z") == ["ada", "bo"]


def test_starts_at_and_ends_at_bound_the_entries(tmp_path: Path) -> None:
    assert sent_to(tmp_path, "starts_at: 2026-11-02T09:00:00Z\n") == ["bo"]
    assert sent_to(tmp_path, "ends_at: '2026-11-02T09:00:00+00:00'\n") == ["ada"]
