"""Each provider's callback format, verified and parsed into `DeliveryEvent`s. Pure: the time is
passed in, nothing is read or written.

- SendGrid's Signed Event Webhook (email): a JSON array of events, signed with ECDSA P-256 over
  SHA-256 of `<X-Twilio-Email-Event-Webhook-Timestamp><raw body>`, the signature base64 DER in
  `X-Twilio-Email-Event-Webhook-Signature`, the public key base64 DER SubjectPublicKeyInfo.
- Expo push receipts (push): `{"data": {"<ticket id>": {"status": "ok"} | {"status": "error",
  "details": {"error": "DeviceNotRegistered"}}}}`, polled by the sender.
- The generic format (SMS, webhooks): `{"dispatch_id", "event", "id", "at"}` signed as outgoing
  webhooks are (`app.sender.signing`, verified by the API)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from app.callbacks.events import BOUNCE_TYPES, EVENT_NAMES, DeliveryEvent
from app.field_error import FieldError

SENDGRID_SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
GENERIC_CHANNELS = ("sms", "webhook")
# SendGrid's event types that say nothing journeys react to: accepted by SendGrid, retried later.
SENDGRID_IGNORED = ("processed", "deferred", "group_resubscribe")


class CallbackError(FieldError):
    """A callback body that is not the provider's format."""


@dataclass(frozen=True)
class Parsed:
    """The reports of one callback journeys can use, and how many others it held (event types
    journeys do not react to, events of messages Journeys did not send)."""

    events: tuple[DeliveryEvent, ...]
    skipped: int


def sendgrid_public_key(encoded: str) -> ec.EllipticCurvePublicKey:
    """The verification key as SendGrid's settings show it (base64 DER SubjectPublicKeyInfo);
    ValueError if it is not a P-256 public key."""
    try:
        key = load_der_public_key(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError) as error:
        raise ValueError(f"not a base64 DER public key: {error}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("not an ECDSA P-256 public key")
    return key


def sendgrid_refusal(
    key: ec.EllipticCurvePublicKey | None,
    signature: str,
    timestamp: str,
    body: bytes,
    now: float,
    tolerance: float,
) -> str | None:
    """Why a SendGrid request is refused (None: it is SendGrid's, signed within `tolerance`)."""
    if key is None:
        return "no SendGrid verification key is configured (SENDGRID_WEBHOOK_PUBLIC_KEY)"
    if not signature or not timestamp:
        return f"{SENDGRID_SIGNATURE_HEADER} and {SENDGRID_TIMESTAMP_HEADER} are required"
    try:
        sent_at = int(timestamp)
        decoded = base64.b64decode(signature, validate=True)
    except (ValueError, binascii.Error):
        return "the signature or timestamp header is malformed"
    if abs(now - sent_at) > tolerance:
        return f"the timestamp is more than {tolerance:g} s from now (a replay?)"
    try:
        key.verify(decoded, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return "the signature does not verify"
    return None


def _json_body(body: bytes, kind: type, expected: str) -> Any:
    """The body's JSON, of `kind` (a list or a dict), or a CallbackError saying what was
    expected."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise CallbackError("body", expected) from None
    if not isinstance(data, kind):
        raise CallbackError("body", expected)
    return data


def parse_sendgrid(body: bytes) -> Parsed:
    """SendGrid's event array. `dropped` is a hard bounce: SendGrid drops mail to addresses it
    has suppressed (bounced, reported as spam, invalid), so the address will not get mail from
    it. An event without Journeys' `dispatch_id` custom arg, or of a type journeys do not react
    to (`processed`, `deferred`), is skipped."""
    items = _json_body(body, list, "a JSON array of SendGrid events")
    events: list[DeliveryEvent] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise CallbackError(f"/{index}", "a SendGrid event object")
        event = _sendgrid_event(item, index)
        if event is not None:
            events.append(event)
    return Parsed(tuple(events), len(items) - len(events))


def _sendgrid_event(item: dict[str, Any], index: int) -> DeliveryEvent | None:
    kind, bounce_type, url = None, None, None
    match item.get("event"):
        case "delivered":
            kind = "delivered"
        case "open":
            kind = "opened"
        case "click":
            kind, url = "clicked", item.get("url") if isinstance(item.get("url"), str) else None
        case "bounce":
            kind, bounce_type = "bounced", "soft" if item.get("type") == "blocked" else "hard"
        case "dropped":
            kind, bounce_type = "bounced", "hard"
        case "spamreport":
            kind = "complained"
        case "unsubscribe" | "group_unsubscribe":
            kind = "unsubscribed"
    dispatch_id = item.get("dispatch_id")
    if kind is None or not isinstance(dispatch_id, str) or not dispatch_id:
        return None
    event_id, timestamp = item.get("sg_event_id"), item.get("timestamp")
    if not isinstance(event_id, str) or not event_id:
        raise CallbackError(f"/{index}/sg_event_id", "SendGrid's event id, a string")
    if not isinstance(timestamp, int) or isinstance(timestamp, bool):
        raise CallbackError(f"/{index}/timestamp", "a Unix time in seconds")
    return DeliveryEvent(
        provider="sendgrid",
        provider_event_id=event_id,
        dispatch_id=dispatch_id,
        kind=kind,
        at=datetime.fromtimestamp(timestamp, UTC),
        bounce_type=bounce_type,
        url=url,
    )


def parse_generic(channel: str, body: bytes) -> DeliveryEvent:
    """One report in the generic format: `dispatch_id`, `event` (delivered, opened, clicked,
    bounced, complained, unsubscribed), `id` (the provider's id of the report, unique per report),
    `at` (RFC 3339 with an offset), and for bounces an optional `bounce_type` (hard, the default,
    or soft)."""
    data = _json_body(body, dict, "a JSON object")
    for name in ("dispatch_id", "id"):
        if not isinstance(data.get(name), str) or not data[name] or len(data[name]) > 256:
            raise CallbackError(name, "a string of 1 to 256 characters")
    if data.get("event") not in EVENT_NAMES:
        raise CallbackError("event", f"one of {', '.join(EVENT_NAMES)}")
    try:
        at = datetime.fromisoformat(data.get("at"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise CallbackError("at", "a date-time with an offset (RFC 3339)") from None
    if at.tzinfo is None:
        raise CallbackError("at", "a date-time with an offset (RFC 3339)")
    bounce_type = None
    if data["event"] == "bounced":
        bounce_type = data.get("bounce_type", "hard")
        if bounce_type not in BOUNCE_TYPES:
            raise CallbackError("bounce_type", "hard or soft")
    return DeliveryEvent(
        provider=channel,
        provider_event_id=data["id"],
        dispatch_id=data["dispatch_id"],
        kind=data["event"],
        at=at,
        bounce_type=bounce_type,
    )


def expo_ticket_id(answer: bytes) -> str | None:
    """The ticket id of Expo's answer to one push (`{"data": {"status": "ok", "id": ...}}`, or
    a one-item list), None if it gave none."""
    try:
        data = orjson.loads(answer).get("data")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    ticket = data[0] if isinstance(data, list) and data else data
    if isinstance(ticket, dict) and ticket.get("status") == "ok":
        ticket_id = ticket.get("id")
        return ticket_id if isinstance(ticket_id, str) and ticket_id else None
    return None


def parse_expo_receipts(
    answer: bytes, tickets: dict[str, str], now: datetime
) -> tuple[DeliveryEvent, ...]:
    """Expo's receipts for `tickets` (ticket id -> dispatch id): `ok` is delivered,
    `DeviceNotRegistered` a hard bounce (the token is dead), any other error a soft one. A ticket
    without a receipt yet is not in the answer."""
    try:
        receipts = orjson.loads(answer).get("data")
    except (orjson.JSONDecodeError, AttributeError):
        raise CallbackError("body", "Expo's receipts: {data: {ticket id: receipt}}") from None
    if not isinstance(receipts, dict):
        raise CallbackError("data", "an object of receipts by ticket id")
    events = []
    for ticket_id, receipt in receipts.items():
        if ticket_id not in tickets or not isinstance(receipt, dict):
            continue
        if receipt.get("status") == "ok":
            kind, bounce_type = "delivered", None
        else:
            details = receipt.get("details")
            error = details.get("error") if isinstance(details, dict) else None
            kind = "bounced"
            bounce_type = "hard" if error == "DeviceNotRegistered" else "soft"
        events.append(DeliveryEvent("expo", ticket_id, tickets[ticket_id], kind, now, bounce_type))
    return tuple(events)
