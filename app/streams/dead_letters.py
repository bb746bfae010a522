"""Writes records no retry can fix to the dead-letter topic, with the reason and original bytes,
so the consumer can go on and an operator can fix and replay them."""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import orjson
from aiokafka import AIOKafkaProducer

from app.config import Settings
from app.engine.effects import utc_text
from app.topics import RecordError, load_contract

log = logging.getLogger(__name__)

Service = Literal["worker", "sender", "api"]


@dataclass(frozen=True)
class DeadLetter:
    source_topic: str
    reason: str
    original: bytes | None
    key: bytes | None = None
    partition: int | None = None
    offset: int | None = None
    where: str | None = None
    recipient: str | None = None

    @classmethod
    def from_error(
        cls,
        error: Exception,
        *,
        source_topic: str,
        original: bytes | None,
        key: bytes | None = None,
        partition: int | None = None,
        offset: int | None = None,
        recipient: str | None = None,
    ) -> DeadLetter:
        where = error.where if isinstance(error, RecordError) else None
        return cls(
            source_topic=source_topic,
            reason=str(error) or repr(error),
            original=original,
            key=key,
            partition=partition,
            offset=offset,
            where=where,
            recipient=recipient,
        )

    def to_record(self, service: Service, at: datetime) -> dict[str, object]:
        return {
            "source_topic": self.source_topic,
            "partition": self.partition,
            "offset": self.offset,
            "key": _b64(self.key),
            "original": _b64(self.original) or "",
            "reason": self.reason,
            "where": self.where,
            "recipient": self.recipient,
            "at": utc_text(at),
            "service": service,
        }


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


class DeadLetterWriter:
    def __init__(self, producer: AIOKafkaProducer, settings: Settings, service: Service) -> None:
        self._producer = producer
        self._topic = settings.topic("dead-letter")
        self._service = service
        self._contract = load_contract("dead-letter")

    async def write(self, letters: list[DeadLetter]) -> None:
        """Waits for every letter to be acknowledged: the source offset is committed only after."""
        futures = []
        for letter in letters:
            record = letter.to_record(self._service, datetime.now(UTC))
            self._contract.validate(record)
            log.warning("dead letter from %s: %s", letter.source_topic, letter.reason)
            futures.append(
                await self._producer.send(
                    self._topic, orjson.dumps(record), key=letter.source_topic.encode()
                )
            )
        for future in futures:
            await future
