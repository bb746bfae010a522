"""`journeys preview` and `journeys test-send` through the command line: the message rendered as
the sender renders it, with the variables the engine would send (a digest included), and a test
send that reaches the provider stub in the provider's format, marked as a test."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import orjson
from click.testing import CliRunner

from app.cli import main
from app.dispatch.unsubscribe import open_token
from app.sender.stub import ProviderStub, serve
from tests.sender.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
WEEKLY = str(ROOT / "examples" / "weekly-summary.yaml")
USER = {
    "user_id": "ada",
    "attributes": {"first_name": "Ada", "email": "ada@example.com"},
    "locale": "fr-CA",
    "events": [
        {"name": "lesson_completed", "at": "2026-11-10T17:00:00Z", "properties": {"title": "Sums"}},
        {"name": "opened_app", "at": "2026-11-10T18:00:00Z"},
        {"name": "badge_earned", "at": "2026-11-11T17:00:00+01:00"},
    ],
}


def data_file(tmp_path: Path, user: dict = USER) -> str:
    path = tmp_path / "user.json"
    path.write_bytes(orjson.dumps(user))
    return str(path)


def test_preview_renders_every_locale_with_the_digest(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["preview", WEEKLY, "summary", "--data", data_file(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = [line.split("/unsubscribe/")[0] for line in result.output.splitlines()]
    assert lines == [
        "# weekly-summary:1 summary: email 'weekly_summary' for ada, en",
        "subject: Your week: 2 activities since 2026-11-10",
        "preheader: What happened since your last summary.",
        "text:",
        "Hello Ada, here is your weekly summary.",
        "badge earned: 1",
        "lesson completed: 1",
        "Latest:",
        "- 2026-11-11 16:00 badge earned",
        "- 2026-11-10 17:00 lesson completed title=Sums",
        "",
        "--",
        "Unsubscribe: http://127.0.0.1:8080",
        "html: (none: text only)",
        "# weekly-summary:1 summary: email 'weekly_summary' for ada, fr (the user's)",
        "subject: Votre semaine : 2 activités depuis le 2026-11-10",
        "preheader: Ce qui s'est passé depuis votre dernier résumé.",
        "text:",
        "Bonjour Ada, voici votre résumé de la semaine.",
        "badge earned : 1",
        "lesson completed : 1",
        "Dernières activités :",
        "- 2026-11-11 16:00 badge earned",
        "- 2026-11-10 17:00 lesson completed title=Sums",
        "",
        "--",
        "Unsubscribe: http://127.0.0.1:8080",
        "html: (none: text only)",
    ]


def test_preview_of_one_part_in_one_locale_with_the_layout(tmp_path: Path) -> None:
    journey = str(ROOT / "examples" / "demo-onboarding.yaml")
    args = ["preview", journey, "welcome", "--data", data_file(tmp_path), "--locale", "de"]
    subject = CliRunner().invoke(main, [*args, "--part", "subject"])
    assert subject.output.splitlines()[1:] == ["subject: Willkommen, Ada!"]
    html = CliRunner().invoke(main, [*args, "--part", "html"])
    assert html.exit_code == 0, html.output
    assert '<html lang="de">' in html.output and "Hallo Ada" in html.output
    # A marketing email (topic product_updates): the footer's one-click link, as the sender's.
    assert 'href="http://127.0.0.1:8080/unsubscribe/' in html.output
    text = CliRunner().invoke(main, [*args, "--part", "text"])
    assert "Unsubscribe: http://127.0.0.1:8080/unsubscribe/" in text.output


def test_preview_refuses_what_it_cannot_show(tmp_path: Path) -> None:
    def error(*args: str) -> str:
        result = CliRunner().invoke(main, ["preview", *args])
        assert result.exit_code != 0
        return result.output.strip().splitlines()[-1]

    data = data_file(tmp_path)
    assert error(WEEKLY, "sumary", "--data", data) == (
        "Error: step: found 'sumary', expected a message step of weekly-summary:1: summary"
    )
    assert "exactly one of --user USER and --data FILE" in error(WEEKLY, "summary")
    bad = data_file(tmp_path, {**USER, "atributes": {}})
    assert error(WEEKLY, "summary", "--data", bad) == (
        "Error: data.atributes: found an unknown key, expected one of user_id, attributes, "
        "locale, timezone, event, events"
    )


async def test_test_send_reaches_the_provider_marked_as_a_test(tmp_path: Path) -> None:
    stub, port = ProviderStub(), free_port()
    runner = await serve(stub, "127.0.0.1", port)
    env = {"EMAIL_API_URL": f"http://127.0.0.1:{port}/email", "EMAIL_API_TOKEN": "t"}
    args = ["test-send", WEEKLY, "summary", "--data", data_file(tmp_path), "--to", "qa@example.com"]
    try:
        result = await asyncio.to_thread(CliRunner().invoke, main, args, env=env)
    finally:
        await runner.cleanup()
    assert result.exit_code == 0, result.output
    ((dispatch_id, delivery),) = stub.delivered.items()
    assert dispatch_id.startswith("test:")
    assert result.output == (
        f"sent test email {dispatch_id} to qa@example.com: "
        "'[TEST] Votre semaine : 2 activités depuis le 2026-11-10' (fr)\n"
    )
    body = delivery["body"]
    assert body["personalizations"] == [{"to": [{"email": "qa@example.com"}]}]
    assert body["subject"] == "[TEST] Votre semaine : 2 activités depuis le 2026-11-10"
    assert body["custom_args"]["dispatch_id"] == dispatch_id
    assert "lesson completed : 1" in body["content"][0]["value"]
    # Its unsubscribe link opts the test recipient out of the topic, never the real user.
    link = body["headers"]["List-Unsubscribe"].strip("<>")
    token = open_token("change-me", link.rsplit("/", 1)[1], datetime.now(UTC))
    assert (token.user_id, token.address, token.topic) == (
        dispatch_id,
        "qa@example.com",
        "weekly_summary",
    )
