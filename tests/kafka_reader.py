"""Reading a topic from its start in tests, until enough records came."""

from __future__ import annotations

import asyncio

import orjson
from aiokafka import AIOKafkaConsumer


async def read_records(bootstrap: str, topic: str, count: int, timeout: float = 30) -> list[dict]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    records: list[dict] = []
    try:
        async with asyncio.timeout(timeout):
            while len(records) < count:
                batch = await consumer.getmany(timeout_ms=300)
                records += [orjson.loads(m.value) for ms in batch.values() for m in ms]
    finally:
        await consumer.stop()
    return records
