"""Channels as adapters over HTTP. Each request carries `Idempotency-Key: <dispatch id>`, so a
provider that honours it turns a resend after a crash into a no-op."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import orjson

from app.config import SenderSettings
from app.dispatch.record import Recipient
from app.sender.templates import Address, RenderedMessage, parse_address


class PermanentError(Exception):
    """The provider refused this message for good (a 4xx other than 408/429): dead-letter it."""


class SuppressedError(Exception):
    """Nothing to send to (no address or token): recorded as suppressed, not an error."""


class TransientError(Exception):
    """Worth retrying: timeouts, dropped connections, 429 and 5xx."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Delivery:
    dispatch_id: str
    channel: str
    recipient: Recipient
    message: RenderedMessage


class Channel(Protocol):
    name: str

    async def deliver(self, session: aiohttp.ClientSession, delivery: Delivery) -> None: ...


def _retry_after(response: aiohttp.ClientResponse) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


async def post_json(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str]
) -> None:
    """POST and sort the outcome into success, TransientError or PermanentError."""
    payload = orjson.dumps(body)
    try:
        async with session.post(
            url, data=payload, headers={"Content-Type": "application/json", **headers}
        ) as response:
            await response.read()
            if response.status < 300:
                return
            if response.status in (408, 429) or response.status >= 500:
                raise TransientError(f"{url} answered {response.status}", _retry_after(response))
            raise PermanentError(f"{url} answered {response.status}")
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as error:
        raise TransientError(f"{url}: {error!r}") from None


@dataclass(frozen=True)
class WebhookChannel:
    """POST JSON to a configured URL, signed with HMAC-SHA256 over the body."""

    url: str
    secret: str
    name: str = "webhook"

    async def deliver(self, session: aiohttp.ClientSession, delivery: Delivery) -> None:
        body = {
            "dispatch_id": delivery.dispatch_id,
            "user_id": delivery.recipient.user_id,
            "template": delivery.message.template_id,
            "locale": delivery.message.locale,
            "subject": delivery.message.subject,
            "body": delivery.message.body,
        }
        signature = hmac.new(self.secret.encode(), orjson.dumps(body), hashlib.sha256).hexdigest()
        await post_json(
            session,
            delivery.recipient.address or self.url,
            body,
            {
                "Idempotency-Key": delivery.dispatch_id,
                "X-Journeys-Signature": f"sha256={signature}",
            },
        )


def _sendgrid_address(address: Address) -> dict[str, str]:
    return {"email": address.email, **({"name": address.name} if address.name else {})}


@dataclass(frozen=True)
class EmailChannel:
    """An email provider's HTTP API in SendGrid's v3 mail/send format: the plain-text part first
    and the HTML part after it (the order SendGrid requires), the template's from (else the
    configured one) and reply-to."""

    url: str
    token: str
    sender: Address
    name: str = "email"

    async def deliver(self, session: aiohttp.ClientSession, delivery: Delivery) -> None:
        if not delivery.recipient.address:
            raise SuppressedError(f"user {delivery.recipient.user_id} has no email address")
        message = delivery.message
        content = [{"type": "text/plain", "value": message.body}]
        if message.html is not None:
            content.append({"type": "text/html", "value": message.html})
        body: dict[str, Any] = {
            "personalizations": [{"to": [{"email": delivery.recipient.address}]}],
            "from": _sendgrid_address(message.sender or self.sender),
            "subject": message.subject,
            "content": content,
            "custom_args": {
                "dispatch_id": delivery.dispatch_id,
                "template": message.template_id,
                "locale": message.locale,
            },
        }
        if message.reply_to is not None:
            body["reply_to"] = _sendgrid_address(message.reply_to)
        headers = {"Idempotency-Key": delivery.dispatch_id, "Authorization": f"Bearer {self.token}"}
        await post_json(session, self.url, body, headers)


@dataclass(frozen=True)
class PushChannel:
    """A push gateway's HTTP API in Expo's push format."""

    url: str
    token: str
    name: str = "push"

    async def deliver(self, session: aiohttp.ClientSession, delivery: Delivery) -> None:
        if not delivery.recipient.address:
            raise SuppressedError(f"user {delivery.recipient.user_id} has no push token")
        body = {
            "to": delivery.recipient.address,
            "title": delivery.message.subject,
            "body": delivery.message.body,
            "data": {
                "dispatch_id": delivery.dispatch_id,
                "template": delivery.message.template_id,
                "locale": delivery.message.locale,
            },
        }
        headers = {"Idempotency-Key": delivery.dispatch_id, "Authorization": f"Bearer {self.token}"}
        await post_json(session, self.url, body, headers)


@dataclass(frozen=True)
class PlainJsonChannel:
    """Any provider that takes plain JSON (used for SMS gateways)."""

    url: str
    name: str

    async def deliver(self, session: aiohttp.ClientSession, delivery: Delivery) -> None:
        body = {
            "dispatch_id": delivery.dispatch_id,
            "to": delivery.recipient.address,
            "user_id": delivery.recipient.user_id,
            "template": delivery.message.template_id,
            "locale": delivery.message.locale,
            "subject": delivery.message.subject,
            "body": delivery.message.body,
        }
        await post_json(session, self.url, body, {"Idempotency-Key": delivery.dispatch_id})


@dataclass(frozen=True)
class ConsoleChannel:
    """For local runs without a provider: prints the message."""

    name: str

    async def deliver(self, session: aiohttp.ClientSession, delivery: Delivery) -> None:
        print(
            f"[{self.name}] {delivery.recipient.user_id} <{delivery.recipient.address}> "
            f"{delivery.message.subject!r} ({delivery.message.locale}) {delivery.dispatch_id}",
            flush=True,
        )


def channels_from(settings: SenderSettings) -> dict[str, Channel]:
    """A configured URL makes a channel real; without one it prints to the console."""
    return {
        "email": EmailChannel(
            settings.email_url,
            settings.email_token,
            parse_address(settings.email_from, "EMAIL_FROM"),
        )
        if settings.email_url
        else ConsoleChannel("email"),
        "push": PushChannel(settings.push_url, settings.push_token)
        if settings.push_url
        else ConsoleChannel("push"),
        "webhook": WebhookChannel(settings.webhook_url, settings.webhook_secret)
        if settings.webhook_url
        else ConsoleChannel("webhook"),
        "sms": PlainJsonChannel(settings.sms_url, "sms")
        if settings.sms_url
        else ConsoleChannel("sms"),
    }
