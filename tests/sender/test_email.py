"""Email a mailbox provider accepts: the sender delivers HTML in the shared layout with its
plain-text alternative, preheader, from and reply-to, in the user's locale, to the provider stub,
which takes SendGrid's v3 mail/send format and refuses what SendGrid refuses."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from app.sender.service import Sender
from app.sender.stub import ProviderStub
from tests.kafka_reader import read_records
from tests.sender.conftest import SenderRig, recipient, record

LAYOUT = """\
<html lang="{{ locale }}"><title>{{ subject }}</title>
<span class="preheader">{{ preheader }}</span>
{{ content }}
{% include "partials/footer.html" %}</html>
"""
NEWS = """\
layout: letter
from: "Acme News <news@acme.test>"
reply_to: help@acme.test
en:
  subject: "News for {{ first_name }}"
  preheader: "Three things this week"
  body: "Hi {{ first_name }}, here is the news."
  html: |
    <p>Hi {{ first_name }}, here is <b>the news</b>.</p>
    {% include "partials/sign_off.html" %}
fr:
  from: "Acme Nouvelles <nouvelles@acme.test>"
  subject: "Nouvelles pour {{ first_name }}"
  body: "Bonjour {{ first_name }}, voici les nouvelles."
  html: "<p>Bonjour {{ first_name }}, voici les nouvelles.</p>"
"""


def write_templates(directory: Path) -> Path:
    (directory / "layouts").mkdir()
    (directory / "partials").mkdir()
    (directory / "layouts" / "letter.html").write_text(LAYOUT)
    (directory / "partials" / "footer.html").write_text("<footer>Acme, 1 Road</footer>")
    (directory / "partials" / "sign_off.html").write_text("<p>The {{ team }} team</p>")
    (directory / "news.yaml").write_text(NEWS)
    (directory / "plain.yaml").write_text("en: {subject: Plain, body: 'Just text, {{ n }}'}\n")
    (directory / "untitled.yaml").write_text("en: {subject: '', body: 'No subject'}\n")
    return directory


async def test_html_in_its_layout_with_its_text_from_and_reply_to(
    rig: SenderRig, tmp_path: Path
) -> None:
    templates = write_templates(tmp_path)
    sender_settings = dataclasses.replace(rig.sender_settings, templates_dir=templates)
    variables = {"first_name": "<Ada>", "team": "Acme", "n": 1}
    await rig.publish(
        record("news", "email", "news", recipient(1, variables=variables)),
        record("nouvelles", "email", "news", recipient(2, locale="fr-CA", variables=variables)),
        record("plain", "email", "plain", recipient(3, variables=variables)),
        record("untitled", "email", "untitled", recipient(4, variables=variables)),
    )
    sender = Sender(rig.settings, sender_settings)
    task = asyncio.create_task(sender.run())
    try:
        outcomes = await rig.outcomes(4)
        letters = await read_records(
            rig.settings.kafka_bootstrap, rig.settings.topic("dead-letter"), 1
        )
    finally:
        sender.stop()
        await asyncio.wait_for(task, 30)
    assert {k[-1]: v["outcome"] for k, v in outcomes.items()} == {
        "1": "sent",
        "2": "sent",
        "3": "sent",
        "4": "failed",
    }
    english = rig.stub.delivered[f"{1:032x}"]
    # A journey's email (not transactional) ends its text with the unsubscribe link.
    assert english["text"].startswith("Hi <Ada>, here is the news.\n\n--\nUnsubscribe: http")
    assert english["html"] == (
        '<html lang="en"><title>News for &lt;Ada&gt;</title>\n'
        '<span class="preheader">Three things this week</span>\n'
        "<p>Hi &lt;Ada&gt;, here is <b>the news</b>.</p>\n"
        "<p>The Acme team</p>\n"
        "<footer>Acme, 1 Road</footer></html>"
    )
    body = english["body"]
    assert [part["type"] for part in body["content"]] == ["text/plain", "text/html"]
    assert body["subject"] == "News for <Ada>"
    assert body["from"] == {"email": "news@acme.test", "name": "Acme News"}
    assert body["reply_to"] == {"email": "help@acme.test"}
    french = rig.stub.delivered[f"{2:032x}"]
    assert french["body"]["from"] == {"email": "nouvelles@acme.test", "name": "Acme Nouvelles"}
    assert french["body"]["reply_to"] == {"email": "help@acme.test"}  # the top-level one
    assert french["text"].startswith("Bonjour <Ada>, voici les nouvelles.\n\n--\nUnsubscribe:")
    assert '<html lang="fr">' in french["html"]
    assert "<p>Bonjour &lt;Ada&gt;, voici les nouvelles.</p>" in french["html"]
    # Without html: text only, from the configured sender.
    plain = rig.stub.delivered[f"{3:032x}"]
    ((part,),) = [plain["body"]["content"]]
    assert part["type"] == "text/plain" and part["value"].startswith("Just text, 1\n\n--\n")
    assert plain["body"]["from"] == {"email": "journeys@example.com"}
    assert "html" not in plain and "reply_to" not in plain["body"]
    # The provider refuses an email without a subject, as SendGrid does: dead-lettered.
    assert f"{4:032x}" not in rig.stub.delivered
    assert letters[0]["recipient"] == f"{4:032x}" and "answered 400" in letters[0]["reason"]


async def test_the_demo_welcome_email_has_html_in_the_shared_layout(rig: SenderRig) -> None:
    await rig.publish(record("welcome", "email", "welcome", recipient(1, locale="de-AT")))
    sender = Sender(rig.settings, rig.sender_settings)
    task = asyncio.create_task(sender.run())
    try:
        await rig.outcomes(1)
    finally:
        sender.stop()
        await asyncio.wait_for(task, 30)
    delivered = rig.stub.delivered[f"{1:032x}"]
    assert delivered["text"].startswith("Hallo User 1, schön, dass du da bist.\n\n--\n")
    html = delivered["html"]
    assert html.startswith("<!DOCTYPE html>") and '<html lang="de">' in html
    assert "Deine erste Klasse ist in zwei Minuten eingerichtet." in html  # the preheader
    assert "Hallo User 1, schön, dass du da bist." in html
    assert '<a href="https://journeys.example/classes/new"' in html  # the button partial
    assert "Journeys, 1 Example Street" in html  # the footer partial
    assert delivered["body"]["from"] == {"email": "hello@journeys.example", "name": "Journeys"}


async def test_the_stub_refuses_what_sendgrid_refuses_and_prints_both_parts(capsys) -> None:
    stub = ProviderStub(print_deliveries=True)
    email = {
        "personalizations": [{"to": [{"email": "ada@x.test"}]}],
        "from": {"email": "hello@x.test", "name": "Hello"},
        "subject": "Hi",
        "content": [
            {"type": "text/html", "value": "<p>Hi</p>"},
            {"type": "text/plain", "value": "Hi"},
        ],
    }
    async with TestClient(TestServer(stub.app())) as client:
        wrong_order = await client.post("/email", json=email, headers={"Idempotency-Key": "a"})
        assert wrong_order.status == 400
        assert (await wrong_order.json())["errors"] == [
            {"field": "content", "message": "text/plain must come first."}
        ]
        no_sender = {**email, "from": {}, "subject": ""}
        refused = await client.post("/email", json=no_sender, headers={"Idempotency-Key": "b"})
        assert [e["field"] for e in (await refused.json())["errors"]] == [
            "from.email",
            "subject",
            "content",
        ]
        email["content"].reverse()
        accepted = await client.post("/email", json=email, headers={"Idempotency-Key": "c"})
        assert accepted.status == 200
    assert list(stub.delivered) == ["c"]
    assert (stub.delivered["c"]["text"], stub.delivered["c"]["html"]) == ("Hi", "<p>Hi</p>")
    assert capsys.readouterr().out.splitlines() == [
        "delivered email    c to=ada@x.test 'Hi'",
        "  from: Hello <hello@x.test>",
        "  text: Hi",
        "  html:",
        "    <p>Hi</p>",
    ]
