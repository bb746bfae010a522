"""Redis as buffer, after the write-up: one job per step and send time instead of one per user.

A send adds its recipient to a Redis set keyed by message step and send-time bucket, and the set's
header to an index ordered by bucket time. The batcher drains due sets up to `batch_size`
recipients at a time: read, produce one dispatch record, then remove. A worker that dies between
producing and removing leaves the recipients in the set; they are produced again and the sender
drops the repeats by dispatch id. Nothing is removed before it is on the `send` topic.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict
from datetime import UTC, datetime

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from app.dispatch.record import DispatchRecord, MessageStep, Recipient

log = logging.getLogger(__name__)

# Releases a lease only if it is still ours (it may have expired and been taken over).
RELEASE_LEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


def bucket_of(send_at: datetime, bucket_seconds: int) -> datetime:
    epoch = int(send_at.timestamp())
    return datetime.fromtimestamp(epoch - epoch % bucket_seconds, UTC)


def _index_key(prefix: str) -> str:
    return f"{prefix}:send-buffers"


def _set_key(prefix: str, step: MessageStep, bucket: datetime) -> str:
    # Hash-tagged by step so one buffer's set and lease share a Redis Cluster slot.
    tag = f"{step.journey_id}:{step.journey_version}:{step.step_id}"
    return f"{prefix}:send-buffer:{{{tag}}}:{int(bucket.timestamp())}"


def _header(step: MessageStep, bucket: datetime) -> bytes:
    return orjson.dumps(
        {**asdict(step), "bucket": int(bucket.timestamp())}, option=orjson.OPT_SORT_KEYS
    )


class SendBuffer:
    def __init__(self, client: aioredis.Redis, prefix: str, bucket_seconds: int = 1) -> None:
        self._redis = client
        self._prefix = prefix
        self.bucket_seconds = bucket_seconds

    async def add_many(self, sends: list[tuple[MessageStep, datetime, Recipient]]) -> None:
        """Adds recipients; adding one that is already there changes nothing."""
        if not sends:
            return
        pipe = self._redis.pipeline(transaction=False)
        for step, send_at, recipient in sends:
            bucket = bucket_of(send_at, self.bucket_seconds)
            member = orjson.dumps(recipient.to_record(), option=orjson.OPT_SORT_KEYS)
            pipe.sadd(_set_key(self._prefix, step, bucket), member)
            pipe.zadd(_index_key(self._prefix), {_header(step, bucket): bucket.timestamp()})
        await pipe.execute()

    async def pending(self) -> int:
        """Recipients waiting in every buffer (for metrics and tests)."""
        headers = await self._redis.zrange(_index_key(self._prefix), 0, -1)
        if not headers:
            return 0
        pipe = self._redis.pipeline(transaction=False)
        for header in headers:
            step, bucket = _parse_header(header)
            pipe.scard(_set_key(self._prefix, step, bucket))
        return sum(await pipe.execute())


def _parse_header(header: bytes) -> tuple[MessageStep, datetime]:
    data = orjson.loads(header)
    bucket = datetime.fromtimestamp(data.pop("bucket"), UTC)
    return MessageStep(**data), bucket


class Batcher:
    """Drains due send buffers into dispatch records; safe to run in every worker at once."""

    def __init__(
        self,
        client: aioredis.Redis,
        producer: AIOKafkaProducer,
        send_topic: str,
        prefix: str,
        batch_size: int = 200,
        lease_seconds: int = 30,
    ) -> None:
        self._redis = client
        self._producer = producer
        self._topic = send_topic
        self._prefix = prefix
        self.batch_size = batch_size
        self._lease_ms = lease_seconds * 1000
        self._owner = uuid.uuid4().hex
        self._release = client.register_script(RELEASE_LEASE)
        self.records_produced = 0
        self.recipients_produced = 0

    async def drain_due(self, now: datetime, max_buffers: int = 100) -> int:
        """Produces dispatch records for every buffer due by `now`; returns how many."""
        headers = await self._redis.zrangebyscore(
            _index_key(self._prefix), "-inf", now.timestamp(), start=0, num=max_buffers
        )
        produced = 0
        for header in headers:
            produced += await self._drain_one(header)
        return produced

    async def _drain_one(self, header: bytes) -> int:
        step, bucket = _parse_header(header)
        key = _set_key(self._prefix, step, bucket)
        lease_key = key + ":lease"
        if not await self._redis.set(lease_key, self._owner, nx=True, px=self._lease_ms):
            return 0  # another batcher is draining it
        produced = 0
        try:
            while members := await self._redis.srandmember(key, self.batch_size):
                recipients = tuple(
                    sorted(
                        (Recipient.from_record(orjson.loads(m)) for m in members),
                        key=lambda r: r.dispatch_id,
                    )
                )
                record = DispatchRecord(step=step, send_at=bucket, recipients=recipients)
                await self._producer.send_and_wait(
                    self._topic,
                    orjson.dumps(record.to_record()),
                    key=record.batch_id.encode(),
                )
                await self._redis.srem(key, *members)
                produced += 1
                self.records_produced += 1
                self.recipients_produced += len(recipients)
            await self._forget_if_empty(header, key)
        finally:
            await self._release(keys=[lease_key], args=[self._owner])
        return produced

    async def _forget_if_empty(self, header: bytes, key: str) -> None:
        """Drops the index entry of an empty set; a send added meanwhile re-adds it."""
        index = _index_key(self._prefix)
        await self._redis.zrem(index, header)
        if await self._redis.scard(key):
            _, bucket = _parse_header(header)
            await self._redis.zadd(index, {header: bucket.timestamp()})
