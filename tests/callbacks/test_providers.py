"""Each provider's callback format: signatures verified as the provider documents them, events
mapped to delivery events with deterministic ids."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import orjson
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from app.callbacks.events import DeliveryEvent, user_event
from app.callbacks.providers import (
    CallbackError,
    expo_ticket_id,
    parse_expo_receipts,
    parse_generic,
    parse_sendgrid,
    sendgrid_public_key,
    sendgrid_refusal,
)
from app.sender.stub import sendgrid_signature

PRIVATE = ec.generate_private_key(ec.SECP256R1())
PUBLIC = base64.b64encode(
    PRIVATE.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()
NOW = 1_800_000_000


def sign(timestamp: str, body: bytes) -> str:
    return base64.b64encode(
        PRIVATE.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    ).decode()


def test_sendgrids_signature_verifies_with_the_public_key_and_nothing_else() -> None:
    key = sendgrid_public_key(PUBLIC)
    body = b'[{"event": "open"}]'
    good = sign(str(NOW), body)
    assert sendgrid_refusal(key, good, str(NOW), body, NOW + 5, 600) is None
    assert sendgrid_refusal(key, good, str(NOW), body + b" ", NOW, 600) is not None
    assert sendgrid_refusal(key, good, str(NOW + 1), body, NOW, 600) is not None
    assert sendgrid_refusal(key, "", str(NOW), body, NOW, 600) is not None
    assert sendgrid_refusal(key, "%%%", str(NOW), body, NOW, 600) is not None
    assert sendgrid_refusal(None, good, str(NOW), body, NOW, 600) is not None
    other = ec.generate_private_key(ec.SECP256R1())
    forged = base64.b64encode(other.sign(str(NOW).encode() + body, ec.ECDSA(hashes.SHA256())))
    assert sendgrid_refusal(key, forged.decode(), str(NOW), body, NOW, 600) is not None


def test_an_old_signed_sendgrid_request_is_a_replay() -> None:
    key = sendgrid_public_key(PUBLIC)
    body = b"[]"
    signature = sign(str(NOW), body)
    assert "replay" in (sendgrid_refusal(key, signature, str(NOW), body, NOW + 601, 600) or "")


def test_the_stubs_signature_is_sendgrids() -> None:
    body = b'[{"event": "delivered"}]'
    signature, timestamp = sendgrid_signature(PRIVATE, body, NOW)
    assert (
        sendgrid_refusal(sendgrid_public_key(PUBLIC), signature, timestamp, body, NOW, 600) is None
    )


def test_a_key_that_is_not_p256_is_refused() -> None:
    with pytest.raises(ValueError):
        sendgrid_public_key("bm90IGEga2V5")
    other = ec.generate_private_key(ec.SECP384R1()).public_key()
    der = other.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ValueError, match="P-256"):
        sendgrid_public_key(base64.b64encode(der).decode())


def sendgrid_event(event: str, **extra: object) -> dict[str, object]:
    return {
        "email": "ada@example.com",
        "timestamp": NOW,
        "event": event,
        "sg_event_id": f"sg-{event}-{len(extra)}",
        "sg_message_id": "m1",
        "dispatch_id": "d1",
        "template": "welcome",
        "locale": "en",
        **extra,
    }


def test_sendgrid_events_map_to_delivery_events() -> None:
    body = orjson.dumps(
        [
            sendgrid_event("processed"),
            sendgrid_event("deferred"),
            sendgrid_event("delivered"),
            sendgrid_event("open"),
            sendgrid_event("click", url="https://journeys.example/x"),
            sendgrid_event("bounce", type="bounce"),
            sendgrid_event("bounce", type="blocked", reason="550"),
            sendgrid_event("dropped"),
            sendgrid_event("spamreport"),
            sendgrid_event("unsubscribe"),
            sendgrid_event("group_unsubscribe", asm_group_id=1),
            {**sendgrid_event("open"), "dispatch_id": None},  # not sent by Journeys
        ]
    )
    parsed = parse_sendgrid(body)
    assert [(e.kind, e.bounce_type) for e in parsed.events] == [
        ("delivered", None),
        ("opened", None),
        ("clicked", None),
        ("bounced", "hard"),
        ("bounced", "soft"),
        ("bounced", "hard"),
        ("complained", None),
        ("unsubscribed", None),
        ("unsubscribed", None),
    ]
    assert parsed.skipped == 3
    assert parsed.events[2].url == "https://journeys.example/x"
    assert {e.dispatch_id for e in parsed.events} == {"d1"}
    assert parsed.events[0].at == datetime.fromtimestamp(NOW, UTC)


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b"{}", "body"),
        (b"not json", "body"),
        (b"[1]", "/0"),
        (orjson.dumps([{**sendgrid_event("open"), "sg_event_id": 5}]), "/0/sg_event_id"),
        (orjson.dumps([{**sendgrid_event("open"), "timestamp": "x"}]), "/0/timestamp"),
    ],
)
def test_a_body_that_is_not_sendgrids_format_names_where(body: bytes, where: str) -> None:
    with pytest.raises(CallbackError) as caught:
        parse_sendgrid(body)
    assert caught.value.where == where


def test_the_generic_format() -> None:
    body = orjson.dumps(
        {"dispatch_id": "d1", "event": "bounced", "id": "p-1", "at": "2026-11-02T09:00:00Z"}
    )
    event = parse_generic("sms", body)
    assert (event.provider, event.kind, event.bounce_type) == ("sms", "bounced", "hard")
    assert event.at == datetime(2026, 11, 2, 9, tzinfo=UTC)
    for bad, where in [
        ({"dispatch_id": "d1", "event": "read", "id": "p", "at": "2026-11-02T09:00:00Z"}, "event"),
        ({"dispatch_id": "d1", "event": "opened", "at": "2026-11-02T09:00:00Z"}, "id"),
        ({"dispatch_id": "d1", "event": "opened", "id": "p", "at": "2026-11-02T09:00"}, "at"),
        ({"event": "opened", "id": "p", "at": "2026-11-02T09:00:00Z"}, "dispatch_id"),
    ]:
        with pytest.raises(CallbackError) as caught:
            parse_generic("sms", orjson.dumps(bad))
        assert caught.value.where == where


def test_expo_tickets_and_receipts() -> None:
    assert expo_ticket_id(b'{"data": {"status": "ok", "id": "t-1"}}') == "t-1"
    assert expo_ticket_id(b'{"data": [{"status": "ok", "id": "t-2"}]}') == "t-2"
    assert expo_ticket_id(b'{"data": {"status": "error", "message": "x"}}') is None
    assert expo_ticket_id(b"not json") is None
    now = datetime(2026, 11, 2, tzinfo=UTC)
    answer = orjson.dumps(
        {
            "data": {
                "t-1": {"status": "ok"},
                "t-2": {"status": "error", "details": {"error": "DeviceNotRegistered"}},
                "t-3": {"status": "error", "details": {"error": "MessageRateExceeded"}},
                "t-9": {"status": "ok"},  # not asked for
            }
        }
    )
    events = parse_expo_receipts(answer, {"t-1": "d1", "t-2": "d2", "t-3": "d3"}, now)
    assert [(e.dispatch_id, e.kind, e.bounce_type) for e in events] == [
        ("d1", "delivered", None),
        ("d2", "bounced", "hard"),
        ("d3", "bounced", "soft"),
    ]


def test_a_reports_user_event_is_the_same_on_every_retry() -> None:
    at = datetime(2026, 11, 2, 9, tzinfo=UTC)
    event = DeliveryEvent("sendgrid", "sg-1", "d1", "bounced", at, "hard")
    send = {
        "user_id": "ada",
        "journey_id": "welcome-opened",
        "journey_version": 1,
        "step_id": "welcome",
        "channel": "email",
    }
    record = user_event(event, send)
    assert record == user_event(
        DeliveryEvent("sendgrid", "sg-1", "d1", "bounced", at, "hard"), send
    )
    assert record["name"] == "message_bounced"
    assert record["properties"] == {
        "dispatch_id": "d1",
        "journey_id": "welcome-opened",
        "journey_version": 1,
        "step_id": "welcome",
        "channel": "email",
        "provider": "sendgrid",
        "bounce_type": "hard",
    }
    assert (
        user_event(DeliveryEvent("sendgrid", "sg-2", "d1", "opened", at), send)["event_id"]
        != record["event_id"]
    )
