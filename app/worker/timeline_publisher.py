"""The `timeline` topic's producer: the emitter's way to take every effect but sends off the
state-write path, a record per user and micro-batch. `publish` returns once Kafka has acknowledged
every record (acks=all), so when the outbox is marked emitted its effects are durable: a crash
before that emits the outbox again (the projector keeps one document per effect id), a crash
after finds them in Kafka."""

from __future__ import annotations

from typing import Any

import orjson
from aiokafka import AIOKafkaProducer


class TimelinePublisher:
    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    async def publish(self, records: list[dict[str, Any]]) -> None:
        """Keyed by user id; waits for every acknowledgement."""
        futures = [
            await self._producer.send(
                self._topic, orjson.dumps(record), key=record["user_id"].encode()
            )
            for record in records
        ]
        for future in futures:
            await future
