"""Raw ceilings of the servers beneath Journeys, measured in the same run as the pipeline so the
pipeline's figures can be read as ratios: what share of the store's (or Kafka's) speed it keeps."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import ReplaceOne, ReturnDocument

from app.config import Settings
from app.store.mongo import close_client, new_client
from app.streams.producer import new_producer


@dataclass(frozen=True)
class Ceiling:
    name: str
    operations: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.operations / self.seconds if self.seconds else 0.0


async def kafka_produce_consume(settings: Settings, messages: int) -> Ceiling:
    """Produce `messages` user-event-sized records, then consume them all back in a group."""
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 8, 1)])
    payload = orjson.dumps(
        {
            "event_id": "e" * 20,
            "user_id": "u" * 12,
            "name": "signed_up",
            "at": "2026-11-02T09:15:00Z",
        }
    )
    producer = new_producer(settings)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=topic,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=2000,
    )
    await producer.start()
    await consumer.start()
    try:
        started = time.perf_counter()
        futures = [
            await producer.send(topic, payload, key=f"u-{i % 10_000}".encode())
            for i in range(messages)
        ]
        await asyncio.gather(*futures)
        received = 0
        while received < messages:
            batch = await consumer.getmany(timeout_ms=500, max_records=2000)
            received += sum(len(ms) for ms in batch.values())
        await consumer.commit()
        return Ceiling("kafka_produce_consume", messages, time.perf_counter() - started)
    finally:
        await consumer.stop()
        await producer.stop()
        await admin.delete_topics([topic])
        await admin.close()


async def mongo_find_one_and_update(settings: Settings, operations: int) -> Ceiling:
    client = new_client(settings)
    collection = client[f"bench_{uuid.uuid4().hex[:8]}"]["users"]
    try:
        started = time.perf_counter()
        for i in range(operations):
            await collection.find_one_and_update(
                {"_id": f"u-{i % 1000}"},
                {"$inc": {"version": 1}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        return Ceiling(
            f"mongo_find_one_and_update_{settings.mongo_driver}",
            operations,
            time.perf_counter() - started,
        )
    finally:
        await client.drop_database(collection.database.name)
        await close_client(client)


async def mongo_bulk_cas(
    settings: Settings, users: int, document: Mapping[str, Any], batch: int = 50
) -> Ceiling:
    """The worker's write pattern: conditional replaces of documents like its user documents
    (their size is most of the cost), `batch` per bulk command (the MONGO_BULK_OPS default)."""
    client = new_client(settings)
    collection = client[f"bench_{uuid.uuid4().hex[:8]}"]["users"]
    document = {k: v for k, v in document.items() if k not in ("_id", "version")}
    try:
        await collection.insert_many(
            [{"_id": f"u-{i}", "version": 1, **document} for i in range(users)]
        )
        started = time.perf_counter()
        for first in range(0, users, batch):
            await collection.bulk_write(
                [
                    ReplaceOne({"_id": f"u-{i}", "version": 1}, {"version": 2, **document})
                    for i in range(first, min(users, first + batch))
                ],
                ordered=False,
            )
        return Ceiling(
            f"mongo_bulk_cas_{settings.mongo_driver}", users, time.perf_counter() - started
        )
    finally:
        await client.drop_database(collection.database.name)
        await close_client(client)


async def mongo_read_and_cas(
    settings: Settings,
    users: int,
    document: Mapping[str, Any],
    round_size: int = 500,
    batch: int = 50,
) -> Ceiling:
    """The least store work a micro-batch needs: its users read in one `$in` query, then
    replaced conditionally in bulk commands of `batch`, all in flight at once, as the worker
    does. The pipeline cannot beat this; the ratio to it is the cost of everything else."""
    client = new_client(settings)
    collection = client[f"bench_{uuid.uuid4().hex[:8]}"]["users"]
    document = {k: v for k, v in document.items() if k not in ("_id", "version")}
    try:
        await collection.insert_many(
            [{"_id": f"u-{i}", "version": 1, **document} for i in range(users)]
        )
        started = time.perf_counter()
        for first in range(0, users, round_size):
            ids = [f"u-{i}" for i in range(first, min(users, first + round_size))]
            await collection.find({"_id": {"$in": ids}}).to_list(None)
            await asyncio.gather(
                *(
                    collection.bulk_write(
                        [
                            ReplaceOne({"_id": user_id, "version": 1}, {"version": 2, **document})
                            for user_id in ids[chunk : chunk + batch]
                        ],
                        ordered=False,
                    )
                    for chunk in range(0, len(ids), batch)
                )
            )
        return Ceiling(
            f"mongo_read_and_cas_{settings.mongo_driver}", users, time.perf_counter() - started
        )
    finally:
        await client.drop_database(collection.database.name)
        await close_client(client)


async def redis_set_nx(settings: Settings, operations: int, pipeline: int = 200) -> Ceiling:
    client = aioredis.from_url(settings.redis_url)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        started = time.perf_counter()
        for first in range(0, operations, pipeline):
            pipe = client.pipeline(transaction=False)
            for i in range(first, min(operations, first + pipeline)):
                pipe.set(f"{prefix}:{{u-{i}}}:lock", "branch", nx=True, ex=60)
            await pipe.execute()
        elapsed = time.perf_counter() - started
        keys = [key async for key in client.scan_iter(f"{prefix}:*", count=1000)]
        for first in range(0, len(keys), 1000):
            await client.delete(*keys[first : first + 1000])
        return Ceiling("redis_set_nx", operations, elapsed)
    finally:
        await client.aclose()
