"""The send's wire forms, shared by the worker and the sender: a send effect as the outbox holds
it becomes a buffer entry (step, send time, recipient), its recipient waits in the Redis send
buffer as sorted-key JSON, and recipients leave together as a DispatchRecord, one message step's
sends for up to ~200 recipients (topics/send.json)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from app.engine.definitions import WebhookRequest
from app.engine.effects import utc_text


@dataclass(frozen=True)
class Recipient:
    user_id: str
    dispatch_id: str
    locale: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    address: str | None = None

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {"user_id": self.user_id, "dispatch_id": self.dispatch_id}
        if self.locale:
            record["locale"] = self.locale
        if self.variables:
            record["variables"] = self.variables
        if self.address is not None:
            record["address"] = self.address
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Recipient:
        return cls(
            user_id=record["user_id"],
            dispatch_id=record["dispatch_id"],
            locale=record.get("locale"),
            variables=dict(record.get("variables") or {}),
            address=record.get("address"),
        )

    def to_json(self) -> bytes:
        """As the send buffer keeps it: sorted keys, so the same recipient is the same member."""
        return orjson.dumps(self.to_record(), option=orjson.OPT_SORT_KEYS)

    @classmethod
    def from_json(cls, data: bytes) -> Recipient:
        return cls.from_record(orjson.loads(data))


@dataclass(frozen=True)
class DispatchStep:
    """What every recipient of one dispatch record shares."""

    journey_id: str
    journey_version: int
    step_id: str
    channel: str
    template_id: str
    # A webhook step's own URL, method, headers and body template.
    webhook: WebhookRequest | None = None
    # The step's subscription topic, and whether its journey is transactional.
    topic: str | None = None
    transactional: bool = False

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "journey_id": self.journey_id,
            "journey_version": self.journey_version,
            "step_id": self.step_id,
            "channel": self.channel,
            "template_id": self.template_id,
        }
        if self.webhook is not None:
            record["webhook"] = self.webhook.to_record()
        if self.topic is not None:
            record["topic"] = self.topic
        if self.transactional:
            record["transactional"] = True
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> DispatchStep:
        webhook = record.get("webhook")
        return cls(
            journey_id=record["journey_id"],
            journey_version=int(record["journey_version"]),
            step_id=record["step_id"],
            channel=record["channel"],
            template_id=record["template_id"],
            webhook=WebhookRequest.from_record(webhook) if webhook else None,
            topic=record.get("topic"),
            transactional=bool(record.get("transactional", False)),
        )


@dataclass(frozen=True)
class DispatchRecord:
    step: DispatchStep
    send_at: datetime
    recipients: tuple[Recipient, ...]

    @property
    def batch_id(self) -> str:
        """Deterministic: the same recipients of the same bucket give the same id on a retry."""
        digest = hashlib.sha256(
            "\n".join(sorted(r.dispatch_id for r in self.recipients)).encode()
        ).hexdigest()[:16]
        stamp = self.send_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        s = self.step
        return f"{s.journey_id[:64]}:{s.journey_version}:{s.step_id[:64]}:{stamp}:{digest}"

    def to_record(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            **self.step.to_record(),
            "send_at": utc_text(self.send_at),
            "recipients": [r.to_record() for r in self.recipients],
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> DispatchRecord:
        return cls(
            step=DispatchStep.from_record(record),
            send_at=datetime.fromisoformat(record["send_at"]),
            recipients=tuple(Recipient.from_record(r) for r in record["recipients"]),
        )


def buffer_entry(send: dict[str, Any]) -> tuple[DispatchStep, datetime, Recipient]:
    """A send effect's record (from an outbox or the timeline) as the send buffer takes it."""
    send_at = send["send_at"]
    return (
        DispatchStep.from_record(send),
        send_at if isinstance(send_at, datetime) else datetime.fromisoformat(send_at),
        Recipient.from_record(send),
    )
