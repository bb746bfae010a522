"""`journeys validate` says what is wrong with a file: misspelt keys with the key meant, steps
nothing leads to."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from app.cli import main

MISSPELT = """\
id: typos
version: 1
entry: {event: signed_up}
reentry: every_time
quiet-hours: {start: "21:00", end: "08:00"}
steps:
  hello:
    type: message
    channel: email
    template: welcome
    nxet: later
  later:
    type: delay
    duration: 1d
"""


def validate(tmp_path: Path, text: str, name: str = "j.yaml") -> tuple[int, list[str]]:
    path = tmp_path / name
    path.write_text(text)
    result = CliRunner().invoke(main, ["validate", str(path)])
    lines = result.output.splitlines()
    return result.exit_code, [line.replace(str(tmp_path), "") for line in lines]


def test_misspelt_keys_and_a_step_nothing_leads_to_are_errors_with_the_key_meant(
    tmp_path: Path,
) -> None:
    code, lines = validate(tmp_path, MISSPELT)
    assert code == 1
    assert lines == [
        "/j.yaml:4: at /reentry: found an unknown key 'reentry', "
        "expected a key this format reads (did you mean `re_entry`?)",
        "/j.yaml:5: at /quiet-hours: found an unknown key 'quiet-hours', "
        "expected a key this format reads (did you mean `quiet_hours`?)",
        "/j.yaml:11: at /steps/hello/nxet: found an unknown key 'nxet', "
        "expected a key this format reads (did you mean `next`?)",
        "/j.yaml:12: at /steps/later: found a step nothing leads to, "
        "expected a link to it from 'hello' (the start) or a step after it, or no such step",
    ]


def test_unknown_keys_are_found_at_every_depth_and_free_form_keys_are_not(
    tmp_path: Path,
) -> None:
    text = """\
id: deep
version: 1
entry: {event: added_to_cart, properties: {any_key: 1, sku: lamp}}
goal: {event: purchased, within: 1d, propreties: {sku: lamp}}
steps:
  wait:
    type: wait_for
    event: purchased
    timeout: 1h
    timed_out: check
  check:
    type: branch
    if: {all: [{attribute: plan, equals: {nested: free}}, {event: viewed, within: 1h, nevr: true}]}
    yes: no_action
    no: no_action
frequency_caps:
  - {channel: email, limit: 1, window: 1d, windw: 2d}
"""
    code, lines = validate(tmp_path, text)
    assert code == 1
    assert [line.split(": found")[0] for line in lines] == [
        "/j.yaml:4: at /goal/propreties",
        "/j.yaml:13: at /steps/check/if/all/1/nevr",
        "/j.yaml:17: at /frequency_caps/0/windw",
    ]
    assert "(did you mean `properties`?)" in lines[0]
    assert "(did you mean `window`?)" in lines[2]
    fixed = text.replace("propreties", "properties").replace(", nevr: true", "")
    code, lines = validate(tmp_path, fixed.replace(", windw: 2d", ""))
    assert (code, lines) == (0, ["/j.yaml: ok (deep version 1, 2 steps)"])


def test_a_missing_key_names_the_misspelling_of_it(tmp_path: Path) -> None:
    code, lines = validate(tmp_path, MISSPELT.replace("template:", "tempalte:"))
    assert code == 1
    assert lines == [
        "/j.yaml:7: at /steps/hello/template: found no value, "
        "expected 'template' to be set (found `tempalte`: a misspelling?)"
    ]


def test_a_bad_rules_file_gets_one_located_line_from_validate_and_simulate(
    tmp_path: Path,
) -> None:
    rules = "kind: rules\nversion: 1\nfrequency_caps:\n  - {channel: email, limit: 1, window: %s}\n"
    expected = "/r.yaml:4: at /frequency_caps/0/window: found '99999999999w', "
    code, lines = validate(tmp_path, rules % "99999999999w", "r.yaml")
    assert (code, lines) == (1, [expected + "expected a duration of at most 36500d"])
    journey, events = tmp_path / "j.yaml", tmp_path / "e.jsonl"
    journey.write_text("id: j\nversion: 1\nentry: {event: a}\nsteps: {end: {type: exit}}\n")
    events.write_text(
        '{"event_id": "1", "user_id": "u", "name": "a", "at": "2026-11-02T09:00:00Z"}'
    )
    args = ["simulate", str(journey), "--events", str(events), "--rules", str(tmp_path / "r.yaml")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and result.exception.__class__ is SystemExit
    assert result.output.replace(str(tmp_path), "") == (
        "Error: " + expected + "expected a duration of at most 36500d\n"
    )


def test_validate_says_a_rules_file_without_kind_needs_one(tmp_path: Path) -> None:
    older = "frequency_caps:\n  - {channel: email, limit: 1, window: 1d}\n"
    code, lines = validate(tmp_path, older, "r.yaml")
    assert (code, lines) == (
        1,
        [
            "/r.yaml:1: at /kind: found no value, expected kind: rules and a version "
            "(a rules file), or id, entry and steps (a journey)"
        ],
    )


def test_a_version_the_store_cannot_keep_is_a_located_error(tmp_path: Path) -> None:
    code, lines = validate(tmp_path, "kind: rules\nversion: 99999999999999999999\n", "r.yaml")
    assert (code, lines) == (
        1,
        [
            "/r.yaml:2: at /version: found 99999999999999999999, "
            "expected a whole number from 1 to 2147483647"
        ],
    )


WEBHOOK = """\
id: hooks
version: 1
entry: {event: signed_up}
steps:
  crm:
    type: message
    channel: webhook
    template: welcome
    url: https://crm.example.com/hooks/journeys
    method: put
    headers: {X-Team: lifecycle, Content-Type: application/json}
    body: '{"user": {{ user_id | tojson }}, "text": {{ message.body | tojson }}}'
"""


def test_a_webhook_step_reads_its_url_method_headers_and_body(tmp_path: Path) -> None:
    code, lines = validate(tmp_path, WEBHOOK)
    assert (code, lines) == (0, ["/j.yaml: ok (hooks version 1, 1 steps)"])


def test_bad_webhook_options_are_located_errors(tmp_path: Path) -> None:
    def error(old: str, new: str) -> list[str]:
        assert old in WEBHOOK
        code, lines = validate(tmp_path, WEBHOOK.replace(old, new))
        assert code == 1
        return lines

    assert error("https://crm.example.com/hooks/journeys", "ftp://crm.example.com") == [
        "/j.yaml:9: at /steps/crm/url: found 'ftp://crm.example.com', "
        "expected an http:// or https:// URL of at most 2048 characters"
    ]
    assert error("method: put", "method: GET") == [
        "/j.yaml:10: at /steps/crm/method: found 'GET', expected one of POST, PUT, PATCH"
    ]
    assert error("X-Team: lifecycle", "X-Journeys-Signature: forged") == [
        "/j.yaml:11: at /steps/crm/headers/X-Journeys-Signature: found 'X-Journeys-Signature', "
        "expected a header name other than content-length, host, idempotency-key, "
        "x-journeys-signature"
    ]
    assert error("X-Team: lifecycle", "X Team: lifecycle") == [
        "/j.yaml:11: at /steps/crm/headers/X Team: found 'X Team', "
        "expected a header name of letters, digits and '-'"
    ]
    assert error("X-Team: lifecycle", "X-Team: 3") == [
        "/j.yaml:11: at /steps/crm/headers/X-Team: found 3, expected a header value: text on "
        "one line"
    ]
    assert error("channel: webhook", "channel: email")[0] == (
        "/j.yaml:9: at /steps/crm/url: found an unknown key 'url', expected a key this format "
        "reads here: channel, digest, next, template, topic, type"
    )


def test_a_webhook_body_must_render_from_the_sample_and_be_json_when_sent_as_json(
    tmp_path: Path,
) -> None:
    unknown = WEBHOOK.replace("message.body | tojson", "plan | tojson")
    code, lines = validate(tmp_path, unknown)
    assert code == 1
    assert lines == [
        "/j.yaml:12: at /steps/crm/body: found a render error: the webhook body template does "
        "not render: 'plan' is undefined, expected a webhook body that renders with the sample "
        "variables (JSON, if sent as JSON)"
    ]
    not_json = WEBHOOK.replace("{{ message.body | tojson }}", "{{ message.body }}")
    code, lines = validate(tmp_path, not_json)
    assert code == 1 and len(lines) == 1
    assert lines[0].startswith("/j.yaml:12: at /steps/crm/body: found a body that is not JSON (")
    as_text = not_json.replace("Content-Type: application/json", "Content-Type: text/plain")
    assert validate(tmp_path, as_text)[0] == 0
