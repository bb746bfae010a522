"""Provider callbacks through the public surface: SendGrid's signed events and the generic
format POSTed to the API, read back from user-events; and the whole loop, a provider stub
reporting an open through the API to a live worker, whose journey waiting for it goes on."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer
from cryptography.hazmat.primitives.asymmetric import ec

from app.api.server import Api
from app.config import ApiSettings
from app.sender import signing
from app.sender.stub import (
    ProviderStub,
    sendgrid_signature,
    sendgrid_verification_key,
    serve,
)
from app.store.mongo import close_client, new_client
from app.store.suppressions import SuppressionList
from app.store.timeline import Timeline
from tests.api.test_api import stack  # noqa: F401  (the fixture)
from tests.sender.conftest import free_port

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
KEY = ec.generate_private_key(ec.SECP256R1())
SECRET = "callback-secret"
SEND = {
    "kind": "send",
    "user_id": "ada",
    "journey_id": "welcome-opened",
    "journey_version": 1,
    "entry_id": "e1",
    "step_id": "welcome",
    "channel": "email",
}


# The callbacks need no token; the API's other routes (reading figures back) need this one.
CALLBACK_API_TOKEN = "unused-by-callbacks"


async def callback_api(settings) -> TestClient:
    api_settings = ApiSettings(
        token=CALLBACK_API_TOKEN,
        port=0,
        sendgrid_public_key=sendgrid_verification_key(KEY),
        callback_secret=SECRET,
        callback_tolerance_seconds=600,
    )
    client = TestClient(TestServer(Api(settings, api_settings).app()))
    await client.start_server()
    return client


async def record_send(settings, dispatch: str, **fields) -> None:
    client = new_client(settings)
    try:
        entry = {**SEND, **fields, "_id": dispatch, "dispatch_id": dispatch}
        await Timeline(client[settings.mongo_db]).record(
            [{**entry, "recorded_at": datetime.now(UTC)}]
        )
    finally:
        await close_client(client)


async def every_record(settings, topic: str, seconds: float = 3) -> list[dict]:
    """Every record on the topic, read for `seconds` (the posts before were acknowledged)."""
    consumer = AIOKafkaConsumer(
        settings.topic(topic),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    records: list[dict] = []
    try:
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            records += [orjson.loads(m.value) for ms in batch.values() for m in ms]
    finally:
        await consumer.stop()
    return sorted(records, key=lambda r: r["name"])


def sendgrid_body(*events: tuple[str, str, str]) -> bytes:
    return orjson.dumps(
        [
            {
                "email": "ada@example.com",
                "timestamp": 1_800_000_000,
                "event": event,
                "sg_event_id": event_id,
                "dispatch_id": dispatch,
                "template": "welcome",
                "locale": "en",
            }
            for event, event_id, dispatch in events
        ]
    )


def sendgrid_headers(body: bytes, now: float | None = None) -> dict[str, str]:
    signature, timestamp = sendgrid_signature(KEY, body, time.time() if now is None else now)
    return {
        "X-Twilio-Email-Event-Webhook-Signature": signature,
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        "Content-Type": "application/json",
    }


async def test_signed_reports_are_published_once_each_as_message_events(stack) -> None:  # noqa: F811
    await record_send(stack, "d-email")
    await record_send(stack, "d-sms", step_id="code", channel="sms")
    api = await callback_api(stack)
    try:
        body = sendgrid_body(
            ("processed", "sg-0", "d-email"),
            ("delivered", "sg-1", "d-email"),
            ("open", "sg-2", "d-email"),
            ("open", "sg-3", "d-not-ours"),
        )
        answer = await api.post("/callbacks/sendgrid", data=body, headers=sendgrid_headers(body))
        assert answer.status == 200
        assert await answer.json() == {"published": 2, "unknown": 1, "skipped": 1}
        again = await api.post("/callbacks/sendgrid", data=body, headers=sendgrid_headers(body))
        assert await again.json() == {"duplicate": 2, "unknown": 1, "skipped": 1}

        forged = sendgrid_headers(body)
        forged["X-Twilio-Email-Event-Webhook-Signature"] = sendgrid_headers(body + b" ")[
            "X-Twilio-Email-Event-Webhook-Signature"
        ]
        assert (await api.post("/callbacks/sendgrid", data=body, headers=forged)).status == 403
        old = sendgrid_headers(body, time.time() - 700)
        assert (await api.post("/callbacks/sendgrid", data=body, headers=old)).status == 403
        assert (await api.post("/callbacks/sendgrid", data=body)).status == 403

        report = orjson.dumps(
            {"dispatch_id": "d-sms", "event": "bounced", "id": "tw-1", "at": "2026-11-02T09:00:00Z"}
        )
        signed = {signing.SIGNATURE_HEADER: signing.sign(SECRET, int(time.time()), report)}
        taken = await api.post("/callbacks/sms", data=report, headers=signed)
        assert (taken.status, await taken.json()) == (202, {"result": "published"})
        repeated = await api.post("/callbacks/sms", data=report, headers=signed)
        assert await repeated.json() == {"result": "duplicate"}
        wrong = {signing.SIGNATURE_HEADER: signing.sign("other", int(time.time()), report)}
        assert (await api.post("/callbacks/sms", data=report, headers=wrong)).status == 403
        assert (await api.post("/callbacks/fax", data=report, headers=signed)).status == 404
        bad = orjson.dumps({"dispatch_id": "d-sms", "event": "read", "id": "x", "at": "now"})
        bad_signed = {signing.SIGNATURE_HEADER: signing.sign(SECRET, int(time.time()), bad)}
        refused = await api.post("/callbacks/sms", data=bad, headers=bad_signed)
        assert (refused.status, (await refused.json())["where"]) == (400, "event")
    finally:
        await api.close()

    records = await every_record(stack, "user-events")
    assert [(r["user_id"], r["name"]) for r in records] == [
        ("ada", "message_bounced"),
        ("ada", "message_delivered"),
        ("ada", "message_opened"),
    ]
    assert records[2]["properties"] == {
        "dispatch_id": "d-email",
        "journey_id": "welcome-opened",
        "journey_version": 1,
        "step_id": "welcome",
        "channel": "email",
        "provider": "sendgrid",
    }
    assert records[0]["properties"]["bounce_type"] == "hard"
    assert records[0]["properties"]["channel"] == "sms"


async def test_bounces_complaints_and_unsubscribes_suppress_the_address(stack) -> None:  # noqa: F811
    addresses = {"d-hard": "hard@x.test", "d-soft": "soft@x.test", "d-spam": "spam@x.test"}
    addresses["d-unsub"] = "unsub@x.test"
    for dispatch, address in addresses.items():
        await record_send(stack, dispatch, address=address)
    events = [
        {"event": "bounce", "type": "bounce", "sg_event_id": "b-1", "dispatch_id": "d-hard"},
        {"event": "bounce", "type": "blocked", "sg_event_id": "b-2", "dispatch_id": "d-soft"},
        {"event": "spamreport", "sg_event_id": "b-3", "dispatch_id": "d-spam"},
        {"event": "unsubscribe", "sg_event_id": "b-4", "dispatch_id": "d-unsub"},
    ]
    body = orjson.dumps(
        [{**e, "email": addresses[e["dispatch_id"]], "timestamp": 1_800_000_000} for e in events]
    )
    api = await callback_api(stack)
    try:
        answer = await api.post("/callbacks/sendgrid", data=body, headers=sendgrid_headers(body))
        assert (answer.status, await answer.json()) == (200, {"published": 4, "skipped": 0})
    finally:
        await api.close()
    client = new_client(stack)
    try:
        listed = await SuppressionList(client[stack.mongo_db]).reasons(
            "email", list(addresses.values())
        )
    finally:
        await close_client(client)
    assert listed == {
        "hard@x.test": "hard bounce",
        "spam@x.test": "spam complaint",
        "unsub@x.test": "unsubscribed from email",
    }
    records = {r["properties"]["dispatch_id"]: r for r in await every_record(stack, "user-events")}
    assert records["d-unsub"]["subscriptions"] == {"email": False}
    assert "subscriptions" not in records["d-spam"]


async def test_an_open_reported_by_the_provider_moves_the_waiting_journey(pipeline) -> None:
    """stub -> API -> user-events -> worker: the welcome email's open takes the yes branch."""
    stub = ProviderStub(sendgrid_key=KEY, callback_secret=SECRET)
    port = free_port()
    runner = await serve(stub, "127.0.0.1", port)
    api = await callback_api(pipeline.settings)
    stub.callback_url = str(api.make_url("/"))
    url = f"http://127.0.0.1:{port}"
    pipeline.env.update(EMAIL_API_URL=f"{url}/email", PUSH_API_URL=f"{url}/push")
    try:
        await pipeline.deploy(EXAMPLES / "welcome-opened.yaml")
        pipeline.start_worker()
        pipeline.start("sender")
        await asyncio.sleep(3)  # the signup comes after the journey's publication
        signup = {
            "event_id": "ada-signup",
            "user_id": "ada",
            "name": "signed_up",
            "at": datetime.now(UTC).isoformat(),
            "attributes": {"email": "ada@example.com", "first_name": "Ada"},
        }
        await pipeline.publish([signup])
        sent = await pipeline.dispatched(timeout=120, until=2)
        assert [r["step_id"] for r in sent] == ["welcome", "add_class"]
        events = await pipeline.read("user-events", timeout=5, until=3)
        opened = next(e for e in events if e["name"] == "message_opened")
        assert opened["properties"]["dispatch_id"] == sent[0]["dispatch_id"]
        assert opened["properties"]["step_id"] == "welcome"
        assert stub.callbacks["sendgrid"] >= 1
    finally:
        await api.close()
        await runner.cleanup()
