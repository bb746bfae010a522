"""Channels as adapters over HTTP. Each request carries `Idempotency-Key: <dispatch id>`, so a
provider that honours it turns a resend after a crash into a no-op."""

from __future__ import annotations

import base64
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import orjson
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from app.callbacks.providers import expo_ticket_id
from app.config import SenderSettings
from app.dispatch.record import Recipient
from app.engine.definitions import WebhookRequest
from app.sender import signing
from app.sender.templates import Address, RenderedMessage, RenderError, parse_address

# Webhook bodies: the message templates' sandbox, where `tojson` of a missing variable is a
# missing variable (UndefinedError) like any other use of it, not a TypeError.
BODY_ENVIRONMENT = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
BODY_ENVIRONMENT.policies["json.dumps_kwargs"] = {"sort_keys": True, "default": str}


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
    # A webhook step's own request (None: the default one).
    webhook: WebhookRequest | None = None


class Channel(Protocol):
    """`deliver` returns the provider's own id of the message when it gives one that a later
    report names (an Expo push ticket id), else None."""

    name: str

    async def deliver(self, session: aiohttp.ClientSession, delivery: Delivery) -> str | None: ...


def _retry_after(response: aiohttp.ClientResponse) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


async def post_json(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str]
) -> bytes:
    """POST JSON and sort the outcome into success (the answer's body), TransientError or
    PermanentError."""
    headers = {"Content-Type": "application/json", **headers}
    return await send_request(session, "POST", url, orjson.dumps(body), headers)


async def send_request(
    session: aiohttp.ClientSession, method: str, url: str, payload: bytes, headers: dict[str, str]
) -> bytes:
    """Send and sort the outcome: 2xx is success (the answer's body is returned); 408, 429, 5xx,
    a timeout or a dropped connection is a TransientError (retried); any other status is a
    PermanentError."""
    try:
        async with session.request(method, url, data=payload, headers=headers) as response:
            answer = await response.read()
            if response.status < 300:
                return answer
            if response.status in (408, 429) or response.status >= 500:
                raise TransientError(f"{url} answered {response.status}", _retry_after(response))
            raise PermanentError(f"{url} answered {response.status}")
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as error:
        raise TransientError(f"{url}: {error!r}") from None


@dataclass(frozen=True)
class WebhookChannel:
    """The step's request (its URL, else WEBHOOK_URL; its method, headers and body template,
    else POST and the default JSON body), signed as `app.sender.signing` says. Without any URL
    it prints to the console, as a channel without a provider does."""

    url: str
    secret: str
    name: str = "webhook"

    async def deliver(self, session: aiohttp.ClientSession, delivery: Delivery) -> None:
        request = delivery.webhook or WebhookRequest()
        url = request.url or delivery.recipient.address or self.url
        if not url:
            await ConsoleChannel(self.name).deliver(session, delivery)
            return
        if request.body is None:
            payload = orjson.dumps(
                {"dispatch_id": delivery.dispatch_id, "user_id": delivery.recipient.user_id}
                | _message_fields(delivery.message)
            )
        else:
            try:
                payload = webhook_body(
                    request.body,
                    delivery.recipient.variables,
                    delivery.message,
                    delivery.dispatch_id,
                    delivery.recipient.user_id,
                )
            except RenderError as error:
                raise PermanentError(str(error)) from None
        await send_request(
            session, request.method, url, payload, self._headers(request, delivery, payload)
        )

    def _headers(
        self, request: WebhookRequest, delivery: Delivery, payload: bytes
    ) -> dict[str, str]:
        named = {name.lower() for name, _ in request.headers}
        headers = {} if "content-type" in named else {"Content-Type": "application/json"}
        return (
            headers
            | dict(request.headers)
            | {
                "Idempotency-Key": delivery.dispatch_id,
                signing.SIGNATURE_HEADER: signing.sign(self.secret, int(time.time()), payload),
            }
        )


def webhook_body(
    template: str,
    variables: dict[str, Any],
    message: RenderedMessage,
    dispatch_id: str,
    user_id: str,
) -> bytes:
    """A step's body template in the templates' sandbox, with the recipient's variables and
    `message` (template, locale, subject, body), `dispatch_id` and `user_id`."""
    context = {
        **variables,
        "message": _message_fields(message),
        "dispatch_id": dispatch_id,
        "user_id": user_id,
    }
    try:
        return BODY_ENVIRONMENT.from_string(template).render(context).encode()
    except (TemplateError, TypeError, ValueError, ArithmeticError) as error:
        raise RenderError(f"the webhook body template does not render: {error}") from None


def _message_fields(message: RenderedMessage) -> dict[str, str]:
    return {
        "template": message.template_id,
        "locale": message.locale,
        "subject": message.subject,
        "body": message.body,
    }


def _sendgrid_address(address: Address) -> dict[str, str]:
    return {"email": address.email, **({"name": address.name} if address.name else {})}


@dataclass(frozen=True)
class EmailChannel:
    """An email provider's HTTP API in SendGrid's v3 mail/send format: the plain-text part first
    and the HTML part after it (the order SendGrid requires), the template's from (else the
    configured one) and reply-to, and a marketing email's List-Unsubscribe headers."""

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
        if message.unsubscribe_url is not None:  # RFC 8058 one-click, in SendGrid's `headers`
            body["headers"] = {
                "List-Unsubscribe": f"<{message.unsubscribe_url}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            }
        headers = {"Idempotency-Key": delivery.dispatch_id, "Authorization": f"Bearer {self.token}"}
        await post_json(session, self.url, body, headers)


@dataclass(frozen=True)
class PushChannel:
    """A push gateway's HTTP API in Expo's push format; its answer's ticket id is returned, for
    the receipt poller (app/sender/receipts.py)."""

    url: str
    token: str
    name: str = "push"

    async def deliver(self, session: aiohttp.ClientSession, delivery: Delivery) -> str | None:
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
        return expo_ticket_id(await post_json(session, self.url, body, headers))


@dataclass(frozen=True)
class TwilioSmsChannel:
    """SMS in Twilio's Messages API format: a form POST of `To`, `From`, `Body` and, when set,
    `StatusCallback` to `<url>/2010-04-01/Accounts/<account SID>/Messages.json`, with HTTP basic
    auth (account SID, auth token). The status callback URL gets `dispatch_id` in its query."""

    url: str
    account_sid: str
    auth_token: str
    sender: str
    status_callback: str = ""
    name: str = "sms"

    async def deliver(self, session: aiohttp.ClientSession, delivery: Delivery) -> None:
        if not delivery.recipient.address:
            raise SuppressedError(f"user {delivery.recipient.user_id} has no phone number")
        form = {
            "To": delivery.recipient.address,
            "From": self.sender,
            "Body": delivery.message.body,
        }
        if self.status_callback:
            joiner = "&" if "?" in self.status_callback else "?"
            query = urllib.parse.urlencode({"dispatch_id": delivery.dispatch_id})
            form["StatusCallback"] = f"{self.status_callback}{joiner}{query}"
        credentials = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        headers = {
            "Authorization": f"Basic {credentials}",
            "Content-Type": "application/x-www-form-urlencoded",
            "Idempotency-Key": delivery.dispatch_id,
            "I-Twilio-Idempotency-Token": delivery.dispatch_id,
        }
        account = urllib.parse.quote(self.account_sid, safe="")
        url = f"{self.url.rstrip('/')}/2010-04-01/Accounts/{account}/Messages.json"
        await send_request(session, "POST", url, urllib.parse.urlencode(form).encode(), headers)


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
        # A step may name its own URL, so the webhook channel is real without WEBHOOK_URL.
        "webhook": WebhookChannel(settings.webhook_url, settings.webhook_secret),
        "sms": TwilioSmsChannel(
            settings.sms_url,
            settings.sms_account_sid,
            settings.sms_auth_token,
            settings.sms_from,
            settings.sms_status_callback,
        )
        if settings.sms_url
        else ConsoleChannel("sms"),
    }
