"""Raw ceilings of the servers beneath Journeys, measured in the same run as the pipeline so the
pipeline's figures can be read as ratios: what share of the store's (or Kafka's) speed it keeps."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import ReplaceOne, ReturnDocument

from app.config import Settings
from app.redis_client import new_redis
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
    """The worker's write pattern on an otherwise empty store: conditional replaces of documents
    like its user documents (their size is most of the cost), `batch` per bulk command (the
    MONGO_BULK_OPS default)."""
    async with _fresh_users(settings, users, document) as (collection, ids):
        seconds = await bulk_cas_seconds(collection, ids, document, batch)
    return Ceiling(f"mongo_bulk_cas_{settings.mongo_driver}", users, seconds)


async def mongo_read_and_cas(
    settings: Settings, users: int, document: Mapping[str, Any]
) -> Ceiling:
    """`read_and_cas_seconds` on an otherwise empty store."""
    async with _fresh_users(settings, users, document) as (collection, ids):
        seconds = await read_and_cas_seconds(collection, ids, document)
    return Ceiling(f"mongo_read_and_cas_{settings.mongo_driver}", users, seconds)


async def bulk_cas_seconds(
    collection: Any, ids: list[str], document: Mapping[str, Any], batch: int = 50
) -> float:
    """Replaces these users' documents, each on its current version, `batch` per bulk command,
    one command after the other; returns the seconds the replaces took."""
    body = _body(document)
    versions = await _versions(collection, ids)
    started = time.perf_counter()
    for first in range(0, len(ids), batch):
        chunk = ids[first : first + batch]
        await collection.bulk_write([_cas(i, versions[i], body) for i in chunk], ordered=False)
    return time.perf_counter() - started


async def read_and_cas_seconds(
    collection: Any,
    ids: list[str],
    document: Mapping[str, Any],
    round_size: int = 500,
    batch: int = 50,
) -> float:
    """The least store work a micro-batch needs: its users read in one `$in` query, then
    replaced conditionally in bulk commands of `batch`, all in flight at once, as the worker
    does. The pipeline cannot beat this; its ratio to it is the cost of everything else."""
    body = _body(document)
    started = time.perf_counter()
    for first in range(0, len(ids), round_size):
        query = {"_id": {"$in": ids[first : first + round_size]}}
        replaces = [_cas(d["_id"], d["version"], body) async for d in collection.find(query)]
        await asyncio.gather(
            *(
                collection.bulk_write(replaces[chunk : chunk + batch], ordered=False)
                for chunk in range(0, len(replaces), batch)
            )
        )
    return time.perf_counter() - started


def _cas(user_id: str, version: int, body: dict[str, Any]) -> ReplaceOne:
    return ReplaceOne({"_id": user_id, "version": version}, {**body, "version": version + 1})


def _body(document: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k not in ("_id", "version")}


async def _versions(collection: Any, ids: list[str]) -> dict[str, int]:
    cursor = collection.find({"_id": {"$in": ids}}, {"version": 1})
    return {d["_id"]: d["version"] async for d in cursor}


@asynccontextmanager
async def _fresh_users(
    settings: Settings, users: int, document: Mapping[str, Any]
) -> AsyncIterator[tuple[Any, list[str]]]:
    client = new_client(settings)
    collection = client[f"bench_{uuid.uuid4().hex[:8]}"]["users"]
    ids = [f"u-{i}" for i in range(users)]
    try:
        await collection.insert_many([{"_id": i, "version": 1, **_body(document)} for i in ids])
        yield collection, ids
    finally:
        await client.drop_database(collection.database.name)
        await close_client(client)


async def redis_set_nx(settings: Settings, operations: int, pipeline: int = 200) -> Ceiling:
    client = new_redis(settings)
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
