"""Reading a topic from its start in tests, until enough records came."""

from __future__ import annotations

import asyncio

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord


async def read_messages(
    bootstrap: str, topic: str, count: int, timeout: float = 30
) -> list[ConsumerRecord]:
    """The Kafka messages themselves, with their partition, key and timestamp."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    messages: list[ConsumerRecord] = []
    try:
        async with asyncio.timeout(timeout):
            while len(messages) < count:
                batch = await consumer.getmany(timeout_ms=300)
                messages += [m for ms in batch.values() for m in ms]
    finally:
        await consumer.stop()
    return messages


async def read_records(bootstrap: str, topic: str, count: int, timeout: float = 30) -> list[dict]:
    return [orjson.loads(m.value) for m in await read_messages(bootstrap, topic, count, timeout)]
