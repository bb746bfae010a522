"""One round trip through each real server, the way the pipeline uses it."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo import ReplaceOne, ReturnDocument

from app.config import Settings


async def _consume(consumer: AIOKafkaConsumer, count: int) -> list[bytes]:
    values: list[bytes] = []
    async with asyncio.timeout(30):
        while len(values) < count:
            batch = await consumer.getmany(timeout_ms=500)
            values.extend(msg.value for msgs in batch.values() for msg in msgs)
    return values


async def test_kafka_consumer_group_resumes_after_committed_offset(
    servers: Settings, new_topic, unique: str
) -> None:
    topic = await new_topic("smoke")
    producer = AIOKafkaProducer(bootstrap_servers=servers.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(3):
            await producer.send_and_wait(topic, f"m{i}".encode(), key=b"u-1")

        group = f"{unique}group"
        first = AIOKafkaConsumer(
            topic,
            bootstrap_servers=servers.kafka_bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await first.start()
        try:
            assert await _consume(first, 3) == [b"m0", b"m1", b"m2"]
            await first.commit()
            assert await first.committed(TopicPartition(topic, 0)) == 3
        finally:
            await first.stop()

        await producer.send_and_wait(topic, b"m3", key=b"u-1")
    finally:
        await producer.stop()

    second = AIOKafkaConsumer(
        topic,
        bootstrap_servers=servers.kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await second.start()
    try:
        assert await _consume(second, 1) == [b"m3"]
    finally:
        await second.stop()


async def test_mongo_find_one_and_update_round_trip(mongo_db: AsyncIOMotorDatabase) -> None:
    users = mongo_db["users"]
    first = await users.find_one_and_update(
        {"_id": "u-1"},
        {"$inc": {"version": 1}, "$set": {"attributes.plan": "free"}},
        upsert=True,
        return_document=ReturnDocument.AFTER,
    )
    assert first == {"_id": "u-1", "version": 1, "attributes": {"plan": "free"}}

    stale = await users.find_one_and_update(
        {"_id": "u-1", "version": 0}, {"$set": {"attributes.plan": "pro"}}
    )
    assert stale is None
    assert (await users.find_one({"_id": "u-1"}))["attributes"] == {"plan": "free"}


async def test_mongo_bulk_compare_and_set_of_hundreds_in_one_command(
    mongo_db: AsyncIOMotorDatabase,
) -> None:
    """Unpatched FerretDB 1.24 deadlocked on one update command of 100 (see scripts/services)."""
    users = mongo_db["users"]
    await users.insert_many([{"_id": f"u-{i}", "version": 1} for i in range(300)])
    replaces = [
        ReplaceOne({"_id": f"u-{i}", "version": 1 if i % 3 else 9}, {"version": 2})
        for i in range(300)
    ]
    result = await asyncio.wait_for(users.bulk_write(replaces, ordered=False), 60)
    assert result.matched_count == 200  # every third one's version did not match
    stale = await users.find({"version": 1}, {"_id": 1}).to_list(None)
    assert sorted(d["_id"] for d in stale) == sorted(f"u-{i}" for i in range(0, 300, 3))
    found = await users.find({"_id": {"$in": ["u-7", "u-8", "nobody"]}, "version": 2}).to_list(None)
    assert sorted(d["_id"] for d in found) == ["u-7", "u-8"]


async def test_redis_set_nx_admits_only_the_first_writer(
    redis_client: aioredis.Redis, unique: str
) -> None:
    key = f"{unique}lock:{{u-1}}"
    assert await redis_client.set(key, "branch-a", nx=True, ex=60) is True
    assert await redis_client.set(key, "branch-b", nx=True, ex=60) is None
    assert await redis_client.get(key) == b"branch-a"
    await redis_client.delete(key)
