"""One-click unsubscribe (RFC 8058): the sender puts a sealed token in every marketing email's
link and `List-Unsubscribe` header; the API opens it and unsubscribes.

The token is Fernet (AES-128-CBC with HMAC-SHA256, from `cryptography`) over a small JSON payload,
keyed from UNSUBSCRIBE_SECRET: nobody can read the user id or address in it, nor forge or alter
one, and it carries its own expiry. It names what the sender knew: the user, channel, address,
the message's topic (if any) and the dispatch id. The unsubscribe is from the topic when the
message has one, else from the whole channel."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
from cryptography.fernet import Fernet, InvalidToken

from app.config import Settings
from app.engine.effects import utc_text

EVENT_NAME = "unsubscribed"


class TokenError(ValueError):
    """A token that is not one of ours, was altered, or has expired (no personal data)."""


@dataclass(frozen=True)
class Unsubscribe:
    user_id: str
    channel: str
    address: str | None
    topic: str | None
    dispatch_id: str
    expires_at: datetime

    @property
    def what(self) -> str:
        """What the click unsubscribes from: the topic, else the channel."""
        return self.topic or self.channel

    @property
    def reason(self) -> str:
        return f"unsubscribed from {self.what}"

    @property
    def event_id(self) -> str:
        """The same for every click of the same message's link, so repeats are one event."""
        digest = hashlib.sha256(
            f"{self.dispatch_id}\n{self.channel}\n{self.topic or ''}".encode()
        ).hexdigest()
        return f"unsubscribe-{digest[:32]}"

    def event(self, at: datetime) -> dict[str, object]:
        """The subscription change, as a user-events record (topics/user-events.json)."""
        change = (
            {"topics": {self.topic: False}}
            if self.topic is not None
            else {"subscriptions": {self.channel: False}}
        )
        properties = {"channel": self.channel, "dispatch_id": self.dispatch_id}
        if self.topic is not None:
            properties["topic"] = self.topic
        return {
            "event_id": self.event_id,
            "user_id": self.user_id,
            "name": EVENT_NAME,
            "at": utc_text(at),
            "properties": properties,
            **change,
        }


def _fernet(secret: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest()))


def seal(secret: str, unsubscribe: Unsubscribe) -> str:
    """The URL-safe token (base64url without padding)."""
    payload = {
        "u": unsubscribe.user_id,
        "c": unsubscribe.channel,
        "a": unsubscribe.address,
        "t": unsubscribe.topic,
        "d": unsubscribe.dispatch_id,
        "e": int(unsubscribe.expires_at.timestamp()),
    }
    return _fernet(secret).encrypt(orjson.dumps(payload)).decode().rstrip("=")


def open_token(secret: str, token: str, now: datetime) -> Unsubscribe:
    """The unsubscribe a token holds; TokenError if it is not ours, was altered or expired."""
    try:
        payload = orjson.loads(_fernet(secret).decrypt(token + "=" * (-len(token) % 4)))
        unsubscribe = Unsubscribe(
            user_id=payload["u"],
            channel=payload["c"],
            address=payload["a"],
            topic=payload["t"],
            dispatch_id=payload["d"],
            expires_at=datetime.fromtimestamp(payload["e"], UTC),
        )
    except (InvalidToken, ValueError, KeyError, TypeError):
        raise TokenError("not a valid unsubscribe token") from None
    if unsubscribe.expires_at < now:
        raise TokenError(f"the unsubscribe link expired at {utc_text(unsubscribe.expires_at)}")
    return unsubscribe


def unsubscribe_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/unsubscribe/{token}"


@dataclass(frozen=True)
class UnsubscribeLinks:
    """A message's one-click unsubscribe URL, made the same way by the sender, `journeys
    preview` and a test send: only marketing email to an address has one."""

    public_url: str
    secret: str
    days: int

    @classmethod
    def of(cls, settings: Settings) -> UnsubscribeLinks:
        return cls(settings.public_url, settings.unsubscribe_secret, settings.unsubscribe_days)

    def url(
        self,
        *,
        user_id: str,
        channel: str,
        address: str | None,
        topic: str | None,
        dispatch_id: str,
        transactional: bool,
        now: datetime,
    ) -> str | None:
        if channel != "email" or transactional or not address:
            return None
        unsubscribe = Unsubscribe(
            user_id=user_id,
            channel=channel,
            address=address,
            topic=topic,
            dispatch_id=dispatch_id,
            expires_at=now + timedelta(days=self.days),
        )
        return unsubscribe_url(self.public_url, seal(self.secret, unsubscribe))
