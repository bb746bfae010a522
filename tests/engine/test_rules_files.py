"""Rules files (`kind: rules`): loading, the errors they give, `journeys validate` on them and
`journeys simulate --rules`, in both the versioned form and the older one without kind."""

from __future__ import annotations

from datetime import time, timedelta
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from app.authoring.files import load_rules
from app.cli import main
from app.engine import (
    Journey,
    JourneyError,
    VersionedRules,
    load_definition_text,
    load_rules_text,
)
from app.engine.definitions import FrequencyCap, QuietHours, Rules

RULES = (
    "kind: rules\n"
    "version: 3\n"
    "quiet_hours: {start: '21:00', end: '08:00'}\n"
    "frequency_caps:\n"
    "  - {channel: email, limit: 1, window: 1d}\n"
    "  - {channel: push, limit: 2, window: 1w}\n"
)
EXPECTED = Rules(
    QuietHours(time(21, 0), time(8, 0)),
    (
        FrequencyCap("email", 1, timedelta(days=1)),
        FrequencyCap("push", 2, timedelta(weeks=1)),
    ),
)
TWO_EMAILS = (
    "id: two-emails\nversion: 1\nentry: {event: signed_up}\nsteps:\n"
    "  first: {type: message, channel: email, template: first_tip, next: wait}\n"
    "  wait: {type: delay, duration: 1h, next: second}\n"
    "  second: {type: message, channel: email, template: generic_offer}\n"
)
SIGNUPS = b"".join(
    orjson.dumps(
        {"event_id": f"{u}-1", "user_id": u, "name": "signed_up", "at": "2026-11-02T10:00:00Z"}
    )
    + b"\n"
    for u in ("ada", "bo")
)


def test_a_rules_file_loads_with_its_version() -> None:
    assert load_rules_text(RULES, "rules.yaml") == VersionedRules(3, EXPECTED)
    assert EXPECTED.describe() == (
        "quiet hours 21:00-08:00; email at most 1 per 1d; push at most 2 per 1w"
    )
    assert load_rules_text("kind: rules\nversion: 1\n").rules == Rules()


def test_the_older_form_without_kind_still_loads_for_the_simulator(tmp_path: Path) -> None:
    versioned, older = tmp_path / "versioned.yaml", tmp_path / "older.yaml"
    versioned.write_text(RULES)
    older.write_text(RULES.replace("kind: rules\nversion: 3\n", ""))
    assert load_rules(versioned) == load_rules(older) == EXPECTED
    with pytest.raises(JourneyError) as raised:
        load_rules_text(older.read_text(), str(older))  # but it cannot be deployed
    assert (raised.value.where, raised.value.line) == ("/kind", 1)
    assert raised.value.expected == "'kind' to be set"


@pytest.mark.parametrize(
    ("text", "where", "line", "expected"),
    [
        ("kind: rule\nversion: 1\n", "/kind", 1, "rules (a journey file has no kind)"),
        ("kind: rules\n", "/version", 1, "'version' to be set"),
        ("kind: rules\nversion: 0\n", "/version", 2, "a whole number from 1"),
        ("kind: rules\nversion: true\n", "/version", 2, "a whole number from 1"),
        (
            "kind: rules\nversion: 1\nfrequency_cap: []\n",
            "/frequency_cap",
            3,
            "a key this format reads (did you mean `frequency_caps`?)",
        ),
        (
            "kind: rules\nversion: 1\nfrequency_caps: {channel: email}\n",
            "/frequency_caps",
            3,
            "a list of frequency caps",
        ),
        (
            RULES.replace("channel: push", "channel: fax"),
            "/frequency_caps/1/channel",
            6,
            "one of email, push, webhook, sms",
        ),
        (
            RULES.replace("window: 1w", "window: weekly"),
            "/frequency_caps/1/window",
            6,
            "a duration such as 90s, 15m, 1h30m, 3d or 1w",
        ),
        (RULES.replace("'08:00'", "'8am'"), "/quiet_hours/end", 3, "a time of day as HH:MM"),
        ("- kind: rules\n", "/", 1, "a mapping"),
    ],
)
def test_a_bad_rules_file_names_line_path_found_and_expected(
    text: str, where: str, line: int, expected: str
) -> None:
    with pytest.raises(JourneyError) as raised:
        load_rules_text(text, "rules.yaml")
    error = raised.value
    assert (error.where, error.line, error.expected) == (where, line, expected)
    assert str(error).startswith(f"rules.yaml:{line}: at {where}: found ")


def test_a_definition_is_a_journey_or_rules_by_its_kind() -> None:
    assert isinstance(load_definition_text(RULES, "r.yaml"), VersionedRules)
    journey = load_definition_text(TWO_EMAILS, "j.yaml")
    assert isinstance(journey, Journey) and journey.id == "two-emails"


def test_validate_takes_journey_and_rules_files(tmp_path: Path) -> None:
    rules, journey, bad = tmp_path / "rules.yaml", tmp_path / "j.yaml", tmp_path / "bad.yaml"
    rules.write_text(RULES)
    journey.write_text(TWO_EMAILS)
    bad.write_text(RULES.replace("limit: 2", "limit: 0"))
    result = CliRunner().invoke(main, ["validate", str(rules), str(journey), str(bad)])
    assert result.exit_code == 1
    assert f"{rules}: ok (rules version 3: quiet hours 21:00-08:00;" in result.output
    assert f"{journey}: ok (two-emails version 1, 3 steps)" in result.output
    assert f"{bad}:6: at /frequency_caps/1/limit: found 0, expected a number from 1" in (
        result.output
    )


def test_simulate_applies_a_rules_file_in_either_form(tmp_path: Path) -> None:
    journey, events = tmp_path / "j.yaml", tmp_path / "events.jsonl"
    journey.write_text(TWO_EMAILS)
    events.write_bytes(SIGNUPS)
    capped = "frequency_caps:\n  - {channel: email, limit: 1, window: 1d}\n"
    versioned, older = tmp_path / "versioned.yaml", tmp_path / "older.yaml"
    versioned.write_text("kind: rules\nversion: 1\n" + capped)
    older.write_text(capped)

    def sends(*rules: str) -> list[tuple[str, str]]:
        args = ["simulate", str(journey), "--events", str(events), "--format", "jsonl", *rules]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        records = [orjson.loads(line) for line in result.output.splitlines()]
        return [(r["user"], r["step"]) for r in records if r["kind"] == "send"]

    both = [("ada", "first"), ("bo", "first"), ("ada", "second"), ("bo", "second")]
    assert sorted(sends()) == sorted(both)
    assert sorted(sends("--rules", str(versioned))) == [("ada", "first"), ("bo", "first")]
    assert sorted(sends("--rules", str(older))) == [("ada", "first"), ("bo", "first")]


def test_simulate_reports_a_bad_rules_file_without_a_traceback(tmp_path: Path) -> None:
    journey, events, rules = tmp_path / "j.yaml", tmp_path / "e.jsonl", tmp_path / "r.yaml"
    journey.write_text(TWO_EMAILS)
    events.write_bytes(SIGNUPS)
    rules.write_text("kind: rules\nversion: one\n")
    args = ["simulate", str(journey), "--events", str(events), "--rules", str(rules)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and result.exception.__class__ is SystemExit
    assert f"{rules}:2: at /version: found 'one', expected a whole number from 1" in result.output


def test_the_example_rules_file_loads() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "rules" / "global.yaml"
    assert load_rules_text(example.read_text(), str(example)).rules.describe() == (
        "quiet hours 22:00-08:00; email at most 2 per 1d; push at most 3 per 1d; "
        "sms at most 1 per 1w"
    )
