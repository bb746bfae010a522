"""A provider stub on loopback for tests and the demo: it accepts email, push, webhook and SMS
requests (SMS as Twilio's Messages API takes them, checking basic auth; webhooks only with a valid
`X-Journeys-Signature`, on `/webhook` and any path below it, with any method), honours
`Idempotency-Key` like a real provider (a repeated key is answered as before and not delivered
again), counts requests per key, prints deliveries as they land, and can be told to misbehave:
answer 429 with Retry-After, 500 or 400, hang, or drop the connection.

It also reports back as each provider does (see "Delivery callbacks" in the README): push is
answered with an Expo ticket and `/push/getReceipts` serves Expo receipts for its tickets
(`DeviceNotRegistered` for tokens in `unregistered_tokens`); with a `callback_url`, each email
accepted is followed by SendGrid's Signed Event Webhook (`sendgrid_events`, signed with
`sendgrid_key`) and each SMS by a `delivered` report in the generic format (signed with
`callback_secret`), POSTed a moment later and retried until answered 2xx, as providers do."""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import time
import urllib.parse
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from app.callbacks.providers import SENDGRID_SIGNATURE_HEADER, SENDGRID_TIMESTAMP_HEADER
from app.engine.effects import utc_text
from app.sender import signing

MODES = ("ok", "429", "500", "400", "hang", "drop")
ONE_CLICK = "List-Unsubscribe=One-Click"
LIST_UNSUBSCRIBE = re.compile(r"^<[^<>\s]+>(\s*,\s*<[^<>\s]+>)*$")
CALLBACK_DELAY_SECONDS = 0.2
CALLBACK_ATTEMPTS = 20


def sendgrid_signature(key: ec.EllipticCurvePrivateKey, body: bytes, now: float) -> tuple[str, str]:
    """SendGrid's signature and timestamp headers for `body` sent at `now`: ECDSA P-256 over
    SHA-256 of the timestamp followed by the body, base64 DER."""
    timestamp = str(int(now))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature).decode(), timestamp


def sendgrid_verification_key(key: ec.EllipticCurvePrivateKey) -> str:
    """The public key as SendGrid's settings show it (SENDGRID_WEBHOOK_PUBLIC_KEY)."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


@dataclass
class ProviderStub:
    print_deliveries: bool = False
    requests: Counter[str] = field(default_factory=Counter)  # per idempotency key
    delivered: dict[str, dict[str, Any]] = field(default_factory=dict)  # accepted once per key
    # Misbehaviours to play, in order, one per request, before answering normally again.
    script: deque[str] = field(default_factory=deque)
    # What the sender must present: Twilio's basic auth for SMS, the webhook signing secret.
    sms_account_sid: str = "AC-local"
    sms_auth_token: str = "change-me"
    webhook_secret: str = "change-me"
    # Callbacks: where the API is (empty: none are sent), SendGrid's signing key, the events
    # reported for each email, and the generic format's secret.
    callback_url: str = ""
    sendgrid_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    sendgrid_events: tuple[str, ...] = ("processed", "delivered", "open")
    callback_secret: str = "change-me"
    unregistered_tokens: set[str] = field(default_factory=set)
    tickets: dict[str, str] = field(default_factory=dict)  # Expo ticket id -> push token
    callbacks: Counter[str] = field(default_factory=Counter)  # answered 2xx, per route
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/_script", self._set_script)
        app.router.add_get("/_stats", self._stats)
        app.router.add_post("/push/getReceipts", self._receipts)
        app.router.add_post("/2010-04-01/Accounts/{account}/Messages.json", self._receive)
        # A webhook step may PUT or PATCH its own path, or the bare /webhook.
        app.router.add_route("*", "/webhook", self._receive)
        app.router.add_route("*", "/webhook/{path:.*}", self._receive)
        app.router.add_post("/{channel}", self._receive)
        return app

    async def _set_script(self, request: web.Request) -> web.Response:
        modes = (await request.json())["modes"]
        if any(mode not in MODES for mode in modes):
            return web.json_response({"error": f"modes are {MODES}"}, status=400)
        self.script.extend(modes)
        return web.json_response({"queued": len(self.script)})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response({"requests": dict(self.requests), "delivered": self.delivered})

    async def _receive(self, request: web.Request) -> web.StreamResponse:
        key = request.headers.get("Idempotency-Key", "")
        self.requests[key] += 1
        mode = self.script.popleft() if self.script else "ok"
        if mode == "hang":
            await asyncio.sleep(3600)
        if mode == "drop":
            assert request.transport is not None
            request.transport.close()
            raise web.HTTPServiceUnavailable
        if mode == "429":
            return web.json_response(
                {"error": "slow down"}, status=429, headers={"Retry-After": "1"}
            )
        if mode in ("500", "400"):
            return web.json_response({"error": mode}, status=int(mode))
        channel = _channel_of(request)
        raw = await request.read()
        refusal = self._refusal(channel, request, raw)
        if refusal is not None:
            return refusal
        try:
            body = _parse(request, raw)
        except ValueError:
            return web.json_response({"error": "a body that does not parse"}, status=400)
        if channel == "sms" and (missing := _missing_sms_fields(body)):
            return web.json_response(
                {"code": 21604, "message": f"missing {', '.join(missing)}"}, status=400
            )
        if channel == "email" and (errors := sendgrid_errors(body)):
            return web.json_response({"errors": errors}, status=400)
        if key and key not in self.delivered:
            parts = email_parts(body) if channel == "email" else {}
            self.delivered[key] = {
                "channel": channel,
                "body": body,
                "method": request.method,
                "path": request.path,
                "headers": dict(request.headers),
                **parts,
            }
            if self.print_deliveries:
                print(f"delivered {channel:<8} {key} {_summary(body)}", flush=True)
                if channel == "email":
                    print(_email_lines(body, parts), flush=True)
        if channel == "email" and key and self.callback_url:
            self._report(key, lambda: self._sendgrid_callback(key, body))
        if channel == "sms" and key and self.callback_url:
            self._report(key, lambda: self._generic_callback("sms", key))
        if channel == "sms":
            return web.json_response({"sid": f"SM{key}", "status": "queued"}, status=201)
        if channel == "push":
            ticket_id = f"ticket-{key}"
            self.tickets[ticket_id] = str(body.get("to", "")) if isinstance(body, dict) else ""
            return web.json_response({"data": {"status": "ok", "id": ticket_id}})
        return web.json_response({"id": key, "status": "accepted"})

    async def _receipts(self, request: web.Request) -> web.Response:
        """Expo's receipts for the tickets asked about that this stub gave."""
        ids = (await request.json()).get("ids", [])
        receipts: dict[str, Any] = {}
        for ticket_id in ids:
            if ticket_id not in self.tickets:
                continue
            if self.tickets[ticket_id] in self.unregistered_tokens:
                receipts[ticket_id] = {
                    "status": "error",
                    "message": "The recipient device is not registered with FCM.",
                    "details": {"error": "DeviceNotRegistered"},
                }
            else:
                receipts[ticket_id] = {"status": "ok"}
        return web.json_response({"data": receipts})

    def _report(self, key: str, request: Any) -> None:
        """Sends a callback a moment after answering (a provider reports after accepting),
        once per accepted message."""
        task = asyncio.create_task(self._post_until_taken(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post_until_taken(self, request: Any) -> None:
        await asyncio.sleep(CALLBACK_DELAY_SECONDS)
        async with aiohttp.ClientSession() as session:
            for attempt in range(CALLBACK_ATTEMPTS):
                url, body, headers = request()
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        if response.status < 300:
                            self.callbacks[url.rsplit("/", 1)[1]] += 1
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(min(0.2 * 2**attempt, 5.0))

    def _sendgrid_callback(self, key: str, email: dict[str, Any]) -> tuple[str, bytes, dict]:
        """SendGrid's event array for one email: its custom args flattened into each event."""
        now = int(time.time())
        to = email["personalizations"][0]["to"][0]["email"]
        events = [
            {
                "email": to,
                "timestamp": now,
                "event": event,
                "sg_event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{key}/{event}")),
                "sg_message_id": f"sg-{key}",
                **email.get("custom_args", {}),
            }
            for event in self.sendgrid_events
        ]
        body = orjson.dumps(events)
        signature, timestamp = sendgrid_signature(self.sendgrid_key, body, now)
        headers = {
            "Content-Type": "application/json",
            SENDGRID_SIGNATURE_HEADER: signature,
            SENDGRID_TIMESTAMP_HEADER: timestamp,
        }
        return f"{self.callback_url.rstrip('/')}/callbacks/sendgrid", body, headers

    def _generic_callback(self, channel: str, key: str) -> tuple[str, bytes, dict]:
        """A `delivered` report in the generic format, signed with the callback secret."""
        body = orjson.dumps(
            {
                "dispatch_id": key,
                "event": "delivered",
                "id": f"{channel}-{key}-delivered",
                "at": utc_text(datetime.now(UTC)),
            }
        )
        headers = {
            "Content-Type": "application/json",
            signing.SIGNATURE_HEADER: signing.sign(self.callback_secret, int(time.time()), body),
        }
        return f"{self.callback_url.rstrip('/')}/callbacks/{channel}", body, headers

    def _refusal(self, channel: str, request: web.Request, raw: bytes) -> web.Response | None:
        """The 401 a real provider answers a request without its credentials or signature."""
        if channel == "sms":
            expected = f"{self.sms_account_sid}:{self.sms_auth_token}".encode()
            if (
                _basic_credentials(request.headers.get("Authorization", "")) != expected
                or request.match_info.get("account") != self.sms_account_sid
            ):
                return web.json_response({"code": 20003, "message": "Authenticate"}, status=401)
        if channel == "webhook":
            header = request.headers.get(signing.SIGNATURE_HEADER, "")
            if not signing.verify(self.webhook_secret, header, raw, time.time()):
                return web.json_response({"error": "bad signature"}, status=401)
        return None


def sendgrid_errors(body: Any) -> list[dict[str, str]]:
    """What SendGrid's v3 mail/send refuses with a 400, in its error format: a recipient, a
    sender, a subject and content are required, each content part non-empty, and text/plain
    comes before text/html."""
    if not isinstance(body, dict):
        return [{"field": "", "message": "The request body must be a JSON object."}]
    errors = []
    personalizations = body.get("personalizations")
    if not personalizations or not all(
        isinstance(p, dict) and p.get("to") and all(_address(t) for t in p["to"])
        for p in personalizations
    ):
        errors.append({"field": "personalizations", "message": "Each needs a 'to' address."})
    if not _address(body.get("from")):
        errors.append({"field": "from.email", "message": "The from address is required."})
    if "reply_to" in body and not _address(body["reply_to"]):
        errors.append({"field": "reply_to.email", "message": "The reply_to email is invalid."})
    if not isinstance(body.get("subject"), str) or not body["subject"]:
        errors.append({"field": "subject", "message": "The subject is required."})
    content = body.get("content")
    types = [part.get("type") for part in content or [] if isinstance(part, dict)]
    if (
        not content
        or len(types) != len(content)
        or any(not isinstance(part.get("value"), str) or not part["value"] for part in content)
    ):
        errors.append({"field": "content", "message": "Each content needs a type and a value."})
    elif "text/plain" in types and types.index("text/plain") != 0:
        errors.append({"field": "content", "message": "text/plain must come first."})
    return errors + _header_errors(body.get("headers", {}))


def _header_errors(headers: Any) -> list[dict[str, str]]:
    """SendGrid's `headers`: an object of string values; and RFC 8058's pair as mailbox
    providers read it: List-Unsubscribe a list of <URI>s, List-Unsubscribe-Post exactly
    `List-Unsubscribe=One-Click` and only beside a List-Unsubscribe."""
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        return [{"field": "headers", "message": "Headers must be an object of strings."}]
    errors = []
    listed = headers.get("List-Unsubscribe")
    if listed is not None and not LIST_UNSUBSCRIBE.match(listed):
        errors.append({"field": "headers", "message": "List-Unsubscribe: expected <URI>, ..."})
    post = headers.get("List-Unsubscribe-Post")
    if post is not None and (post != ONE_CLICK or listed is None):
        errors.append(
            {
                "field": "headers",
                "message": f"List-Unsubscribe-Post: expected {ONE_CLICK} with List-Unsubscribe",
            }
        )
    return errors


def _address(value: Any) -> bool:
    return isinstance(value, dict) and "@" in str(value.get("email", ""))


def email_parts(body: dict[str, Any]) -> dict[str, str]:
    """An accepted email's plain-text and HTML parts, as a mailbox would get them."""
    names = {"text/plain": "text", "text/html": "html"}
    return {names[part["type"]]: part["value"] for part in body["content"] if part["type"] in names}


def _email_lines(body: dict[str, Any], parts: dict[str, str]) -> str:
    lines = [f"  from: {_named(body['from'])}"]
    if "reply_to" in body:
        lines.append(f"  reply-to: {_named(body['reply_to'])}")
    headers = body.get("headers", {})
    if "List-Unsubscribe" in headers:
        one_click = " (one-click)" if headers.get("List-Unsubscribe-Post") == ONE_CLICK else ""
        plain = "" if "<https://" in headers["List-Unsubscribe"] else " (not https: set PUBLIC_URL)"
        lines.append(f"  list-unsubscribe: {headers['List-Unsubscribe']}{one_click}{plain}")
    lines.append(f"  text: {parts.get('text', '')}")
    if "html" in parts:
        lines += ["  html:", *(f"    {line}" for line in parts["html"].splitlines())]
    return "\n".join(lines)


def _named(address: dict[str, str]) -> str:
    return f"{address['name']} <{address['email']}>" if address.get("name") else address["email"]


def _channel_of(request: web.Request) -> str:
    if "account" in request.match_info:
        return "sms"
    return request.match_info.get("channel", "webhook")


def _basic_credentials(authorization: str) -> bytes | None:
    """`login:password` of an HTTP basic Authorization header, or None."""
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(encoded, validate=True)
    except binascii.Error:
        return None


def _missing_sms_fields(body: Any) -> list[str]:
    """Twilio's required fields an SMS request lacks (a body that is not a form lacks all)."""
    form = body if isinstance(body, dict) else {}
    return [name for name in ("To", "From", "Body") if not form.get(name)]


def _parse(request: web.Request, raw: bytes) -> Any:
    """A form as a mapping of its fields, JSON as JSON, anything else as text; ValueError if it
    does not parse as its Content-Type says."""
    if request.content_type == "application/x-www-form-urlencoded":
        return dict(urllib.parse.parse_qsl(raw.decode()))
    if request.content_type == "application/json":
        return orjson.loads(raw)
    return raw.decode(errors="replace")


def _summary(body: Any) -> str:
    if not isinstance(body, dict):
        return f"{len(str(body))} characters"
    subject = body.get("subject") or body.get("title") or body.get("Body") or ""
    if "personalizations" in body:
        to = ", ".join(t["email"] for p in body["personalizations"] for t in p["to"])
    else:
        to = body.get("to") or body.get("To") or body.get("user_id")
    return f"to={to} {subject!r}"


async def serve(stub: ProviderStub, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(stub.app())
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
