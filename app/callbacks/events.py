"""A provider's report about one message, and the user event it becomes. Pure: the same report
always gives the same event id, so a provider's retry is an event the engine has applied."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.engine.effects import utc_text

# What happened to a message -> the user event's name.
EVENT_NAMES = {
    "delivered": "message_delivered",
    "opened": "message_opened",
    "clicked": "message_clicked",
    "bounced": "message_bounced",
    "complained": "message_complained",
    "unsubscribed": "message_unsubscribed",
}
BOUNCE_TYPES = ("hard", "soft")


@dataclass(frozen=True)
class DeliveryEvent:
    """One verified provider report: `provider_event_id` is the provider's own id of the report
    (SendGrid's `sg_event_id`, an Expo ticket id, the generic format's `id`)."""

    provider: str
    provider_event_id: str
    dispatch_id: str
    kind: str  # a key of EVENT_NAMES
    at: datetime
    bounce_type: str | None = None  # hard | soft, for bounces
    url: str | None = None  # the link clicked, for clicks

    @property
    def event_id(self) -> str:
        """Deterministic, so every retry of the report is the same user event."""
        key = f"{self.provider}|{self.provider_event_id}"
        return f"callback-{hashlib.sha256(key.encode()).hexdigest()[:32]}"


def suppression_reason(event: DeliveryEvent, channel: str) -> str | None:
    """Why a report puts its address on the suppression list, or None: a soft bounce or an
    open does not."""
    if event.kind == "bounced" and event.bounce_type == "hard":
        return "hard bounce"
    if event.kind == "complained":
        return "spam complaint"
    if event.kind == "unsubscribed":
        return f"unsubscribed from {channel}"
    return None


def user_event(event: DeliveryEvent, send: dict[str, Any]) -> dict[str, Any]:
    """The `user-events` record of a report about `send` (a timeline send or a delivery
    document: its user, journey, version, step and channel)."""
    properties: dict[str, Any] = {
        "dispatch_id": event.dispatch_id,
        "journey_id": send["journey_id"],
        "step_id": send["step_id"],
        "channel": send["channel"],
        "provider": event.provider,
    }
    if send.get("journey_version") is not None:
        properties["journey_version"] = send["journey_version"]
    if event.bounce_type is not None:
        properties["bounce_type"] = event.bounce_type
    if event.url is not None:
        properties["url"] = event.url
    record = {
        "event_id": event.event_id,
        "user_id": send["user_id"],
        "name": EVENT_NAMES[event.kind],
        "at": utc_text(event.at),
        "properties": properties,
    }
    if event.kind == "unsubscribed":
        # An unsubscribe at the provider is the user's channel subscription, as the engine sees
        # one from the one-click link.
        record["subscriptions"] = {send["channel"]: False}
    return record
