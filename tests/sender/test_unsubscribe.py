"""One-click unsubscribe and the suppression list through the public surface: the emails the
provider stub receives, the API's unsubscribe page and POST, the sender's ledger and the event on
user-events."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from datetime import UTC, datetime, timedelta

from aiohttp.test_utils import TestClient, TestServer

from app.api.server import Api
from app.config import ApiSettings
from app.dispatch.record import DispatchRecord, DispatchStep
from app.dispatch.unsubscribe import Unsubscribe, open_token, seal
from app.sender.stub import ONE_CLICK, sendgrid_errors
from app.store.mongo import close_client, new_client
from app.store.suppressions import SuppressionList
from tests.kafka_reader import read_records
from tests.sender.conftest import SenderRig, recipient, record, running

URL = re.compile(r"<(http://127\.0\.0\.1:8080/unsubscribe/([A-Za-z0-9_-]+))>")


def topical(step: str, *recipients, topic: str | None = "product_updates", **options):
    plain = record(step, "email", "welcome", *recipients)
    step_ = dataclasses.replace(plain.step, topic=topic, **options)
    return DispatchRecord(step_, plain.send_at, plain.recipients)


def token_for(rig: SenderRig, step: DispatchStep, n: int, expires_in: timedelta) -> str:
    """A token as the sender seals one for recipient n of a record of `step`."""
    person = recipient(n)
    return seal(
        rig.settings.unsubscribe_secret,
        Unsubscribe(
            person.user_id,
            step.channel,
            person.address,
            step.topic,
            person.dispatch_id,
            datetime.now(UTC) + expires_in,
        ),
    )


async def api(rig: SenderRig) -> TestClient:
    app = Api(rig.settings, ApiSettings(token="t", port=0, max_body_bytes=65536)).app()
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_a_marketing_email_carries_the_one_click_link_and_a_transactional_one_none(
    rig: SenderRig,
) -> None:
    marketing = topical("news", recipient(1))
    receipt = topical("receipt", recipient(2), topic=None, transactional=True)
    await rig.publish(marketing, receipt)
    async with running(rig):
        await rig.outcomes(2)
    body = rig.stub.delivered[f"{1:032x}"]["body"]
    headers = body["headers"]
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url, token = URL.fullmatch(headers["List-Unsubscribe"]).groups()
    assert "u-1" not in token and "u1@x.test" not in token  # sealed, not readable
    opened = open_token(rig.settings.unsubscribe_secret, token, datetime.now(UTC))
    assert (opened.user_id, opened.topic, opened.address) == ("u-1", "product_updates", "u1@x.test")
    assert opened.expires_at > datetime.now(UTC) + timedelta(days=89)
    text, html = (part["value"] for part in body["content"])
    assert text.endswith(f"\n\n--\nUnsubscribe: {url}")
    assert f'<a href="{url}"' in html  # the footer partial's link
    transactional = rig.stub.delivered[f"{2:032x}"]["body"]
    assert "headers" not in transactional
    assert all("/unsubscribe/" not in part["value"] for part in transactional["content"])


async def test_an_unsubscribe_arriving_while_the_send_is_queued_is_honoured(
    rig: SenderRig,
) -> None:
    news = topical("news", recipient(1), recipient(2), recipient(3))
    # A transactional send ignores topic opt-outs, even with a topic in its record.
    receipt = topical("receipt", recipient(4), transactional=True)
    channel_wide = topical("digest", recipient(5), topic=None)
    await rig.publish(news, receipt, channel_wide)
    client = await api(rig)
    try:
        topic_token = token_for(rig, news.step, 1, timedelta(days=1))
        page = await client.get(f"/unsubscribe/{topic_token}")  # a link scanner: nothing changes
        assert page.status == 200 and "Unsubscribe from product_updates?" in await page.text()
        assert f'<form method="post" action="/unsubscribe/{topic_token}">' in await page.text()
        # No API token: the one-click POST is public. A repeated click is the same event.
        for _ in range(2):
            done = await client.post(
                f"/unsubscribe/{topic_token}", data="List-Unsubscribe=One-Click"
            )
            assert done.status == 200
        receipt_token = token_for(rig, news.step, 4, timedelta(days=1))
        assert (await client.post(f"/unsubscribe/{receipt_token}")).status == 200
        channel_token = token_for(rig, channel_wide.step, 5, timedelta(days=1))
        assert (await client.post(f"/unsubscribe/{channel_token}")).status == 200
        expired = token_for(rig, news.step, 2, timedelta(seconds=-1))
        refused = await client.post(f"/unsubscribe/{expired}")
        assert refused.status == 400 and "expired" in await refused.text()
        forged = await client.post(f"/unsubscribe/{topic_token[:-4]}AAAA")
        assert forged.status == 400
    finally:
        await client.close()
    async with running(rig):
        outcomes = await rig.outcomes(5)
    assert {key: (o["outcome"], o["reason"]) for key, o in outcomes.items()} == {
        f"{1:032x}": ("suppressed", "unsubscribed from product_updates"),
        f"{2:032x}": ("sent", None),
        f"{3:032x}": ("sent", None),
        f"{4:032x}": ("sent", None),
        f"{5:032x}": ("suppressed", "unsubscribed from email"),
    }
    assert set(rig.stub.requests) == {f"{n:032x}" for n in (2, 3, 4)}
    events = await read_records(rig.settings.kafka_bootstrap, rig.settings.topic("user-events"), 4)
    by_user = {}
    for event in events:
        by_user.setdefault(event["user_id"], []).append(event)
    first, again = by_user["u-1"]
    assert first["event_id"] == again["event_id"] and first["name"] == "unsubscribed"
    assert first["topics"] == {"product_updates": False} and "subscriptions" not in first
    assert first["properties"] == {
        "channel": "email",
        "dispatch_id": f"{1:032x}",
        "topic": "product_updates",
    }
    (channel_event,) = by_user["u-5"]
    assert channel_event["subscriptions"] == {"email": False}


async def test_the_suppression_list_stops_a_retry_and_every_send_to_the_address(
    rig: SenderRig,
) -> None:
    rig.stub.script.extend(["500", "500"])
    await rig.publish(topical("news", recipient(1)))
    client = new_client(rig.settings)
    suppressions = SuppressionList(client[rig.settings.mongo_db])
    try:
        async with running(rig):
            while not rig.stub.requests:  # the first attempt failed: a retry is waiting
                await asyncio.sleep(0.01)
            await suppressions.add("email", "U1@x.test", "hard bounce", datetime.now(UTC))
            outcomes = await rig.outcomes(1)
        assert await suppressions.reasons("email", ["u1@x.test", "u2@x.test"]) == {
            "u1@x.test": "hard bounce"
        }
    finally:
        await close_client(client)
    (outcome,) = outcomes.values()
    assert (outcome["outcome"], outcome["reason"]) == ("suppressed", "hard bounce")
    assert rig.stub.requests[f"{1:032x}"] <= 2 and not rig.stub.delivered


def test_the_stub_checks_the_one_click_headers_as_mailbox_providers_read_them() -> None:
    email = {
        "personalizations": [{"to": [{"email": "a@x.test"}]}],
        "from": {"email": "b@x.test"},
        "subject": "Hi",
        "content": [{"type": "text/plain", "value": "Hi"}],
    }
    good = {"List-Unsubscribe": "<https://x.test/u/1>", "List-Unsubscribe-Post": ONE_CLICK}
    assert sendgrid_errors({**email, "headers": good}) == []
    for bad in (
        {"List-Unsubscribe": "https://x.test/u/1"},  # no angle brackets
        {"List-Unsubscribe-Post": ONE_CLICK},  # one-click without the URL
        {**good, "List-Unsubscribe-Post": "yes"},
        {"X-Count": 1},
    ):
        assert [e["field"] for e in sendgrid_errors({**email, "headers": bad})] == ["headers"]
