"""Redis as buffer, after the write-up: one job per step and send time instead of one per user.

A send adds its recipient to a Redis set keyed by message step and send-time bucket, and the set's
header to an index ordered by bucket time (split in shards by step: app/keyspace.py). The batcher
drains a step's due sets `batch_size` recipients at a time, across buckets: read, produce one
dispatch record, then remove. A worker
that dies between producing and removing leaves the recipients in the set; they are produced
again and the sender drops the repeats by dispatch id. Nothing is removed before it is on the
`send` topic.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from datetime import UTC, datetime, timedelta

import orjson
from aiokafka import AIOKafkaProducer

from app.dispatch.record import DispatchRecord, DispatchStep, Recipient
from app.keyspace import Keyspace
from app.redis_client import RedisClient, RedisPipeline
from app.worker.metrics import WorkerMetrics

log = logging.getLogger(__name__)

# Releases a lease only if it is still ours (it may have expired and been taken over).
RELEASE_LEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


def send_bucket(send_at: datetime, bucket_seconds: int) -> datetime:
    """The start of the send-time bucket `send_at` falls in."""
    epoch = int(send_at.timestamp())
    return datetime.fromtimestamp(epoch - epoch % bucket_seconds, UTC)


def _header(step: DispatchStep, bucket: datetime) -> bytes:
    return orjson.dumps(
        {**step.to_record(), "bucket": int(bucket.timestamp())}, option=orjson.OPT_SORT_KEYS
    )


class SendBuffer:
    def __init__(self, client: RedisClient, prefix: str, bucket_seconds: int = 1) -> None:
        self._redis = client
        self._keys = Keyspace(prefix)
        self.bucket_seconds = bucket_seconds

    async def add_many(self, sends: list[tuple[DispatchStep, datetime, Recipient]]) -> None:
        """Adds recipients; adding one that is already there changes nothing."""
        pipe = self.pipeline()
        self.queue_add(pipe, sends)
        await pipe.execute()

    def pipeline(self) -> RedisPipeline:
        return self._redis.pipeline(transaction=False)

    def queue_add(
        self, pipe: RedisPipeline, sends: list[tuple[DispatchStep, datetime, Recipient]]
    ) -> None:
        """Queues `add_many`'s commands: per step and bucket, one SADD of its recipients, then one
        ZADD of its header (in that order, which `Batcher._forget_empty` relies on)."""
        buffers: dict[tuple[DispatchStep, datetime], list[bytes]] = {}
        for step, send_at, recipient in sends:
            bucket = send_bucket(send_at, self.bucket_seconds)
            buffers.setdefault((step, bucket), []).append(recipient.to_json())
        for (step, bucket), members in buffers.items():
            pipe.sadd(self._keys.send_buffer(step, bucket), *members)
            index = self._keys.send_buffer_index_of(step)
            pipe.zadd(index, {_header(step, bucket): bucket.timestamp()})

    async def pending(self) -> int:
        """Recipients waiting in every buffer (for metrics and tests)."""
        pipe = self._redis.pipeline(transaction=False)
        for index in self._keys.send_buffer_indexes():
            pipe.zrange(index, 0, -1)
        headers = [header for shard in await pipe.execute() for header in shard]
        if not headers:
            return 0
        pipe = self._redis.pipeline(transaction=False)
        for header in headers:
            step, bucket = _parse_header(header)
            pipe.scard(self._keys.send_buffer(step, bucket))
        return sum(await pipe.execute())


def _oldest(
    taken: list[tuple[datetime, list[bytes]]], count: int
) -> list[tuple[datetime, list[bytes]]]:
    """The first `count` members of buckets taken oldest first."""
    kept: list[tuple[datetime, list[bytes]]] = []
    for bucket, members in taken:
        if count <= 0:
            break
        kept.append((bucket, members[:count]))
        count -= len(kept[-1][1])
    return kept


def _parse_header(header: bytes) -> tuple[DispatchStep, datetime]:
    data = orjson.loads(header)
    bucket = datetime.fromtimestamp(data.pop("bucket"), UTC)
    return DispatchStep.from_record(data), bucket


class Batcher:
    """Drains due send buffers into dispatch records; safe to run in every worker at once.

    A step's recipients are taken oldest bucket first, across buckets. A record carries at least
    `batch_size` recipients whenever the step has that many, and fewer than twice that: records
    of `batch_size` leave while at least twice as many wait, all that wait leave together as
    soon as they are `batch_size` or more, and fewer are held and leave as one record once their
    number has not grown for `hold_seconds` (the flow has paused), or after `max_wait_seconds`
    whatever the flow. So N sends of a step leave in N / batch_size records, plus one for the
    remainder of each pause in the flow, and no recipient waits for a second record's worth of
    others (held for twice the size, the benchmark's recipients waited 1.6 s for the batcher at
    half the maximum rate). Bucket times say when a send is due, not when it was added (a burst
    of old events fills an old bucket), so they cannot tell when the flow paused. Sends arrive a
    micro-batch at a time, so the hold is stretched to one and a half of the longest recent
    micro-batch: a pause between two batches is not a pause in the flow."""

    def __init__(
        self,
        client: RedisClient,
        producer: AIOKafkaProducer,
        send_topic: str,
        prefix: str,
        batch_size: int = 200,
        lease_seconds: int = 30,
        hold_seconds: float = 1.0,
        max_wait_seconds: float = 5.0,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self._redis = client
        self._producer = producer
        self._topic = send_topic
        self._keys = Keyspace(prefix)
        self.batch_size = batch_size
        self._lease_ms = lease_seconds * 1000
        self._hold = timedelta(seconds=hold_seconds)
        self._max_wait = timedelta(seconds=max_wait_seconds)
        self._batch_seconds: deque[float] = deque(maxlen=20)
        # step -> (recipients waiting, when that number was first seen, when the wait began)
        self._waiting: dict[DispatchStep, tuple[int, datetime, datetime]] = {}
        self._owner = uuid.uuid4().hex
        self._release = client.register_script(RELEASE_LEASE)
        self.records_produced = 0
        self.recipients_produced = 0
        self._metrics = metrics or WorkerMetrics()

    async def drain_due(self, now: datetime, max_buffers: int = 1000) -> int:
        """Produces dispatch records for the buffers due by `now`; returns how many. Reads
        `max_buffers` headers at most from each index shard."""
        pipe = self._redis.pipeline(transaction=False)
        for index in self._keys.send_buffer_indexes():
            pipe.zrangebyscore(index, "-inf", now.timestamp(), start=0, num=max_buffers)
        headers = [header for shard in await pipe.execute() for header in shard]
        buckets: dict[DispatchStep, list[datetime]] = {}
        for header in headers:
            step, bucket = _parse_header(header)
            buckets.setdefault(step, []).append(bucket)
        produced = 0
        for step, step_buckets in buckets.items():
            produced += await self._drain_step(step, sorted(step_buckets), now)
        return produced

    async def _drain_step(self, step: DispatchStep, buckets: list[datetime], now: datetime) -> int:
        lease_key = self._keys.send_buffer_lease(step)
        if not await self._redis.set(lease_key, self._owner, nx=True, px=self._lease_ms):
            return 0  # another batcher is draining this step
        produced = 0
        try:
            while taken := await self._take(step, buckets, 2 * self.batch_size):
                waiting = sum(len(batch) for _, batch in taken)
                held = waiting < self.batch_size
                if held and not self._partial_may_leave(step, waiting, now):
                    break
                if waiting >= 2 * self.batch_size:
                    taken = _oldest(taken, self.batch_size)
                elif not held:
                    self._waiting.pop(step, None)  # the wait of the next ones begins now
                members = [(bucket, member) for bucket, batch in taken for member in batch]
                oldest = taken[0][0]
                recipients = tuple(
                    sorted(
                        (Recipient.from_json(m) for _, m in members),
                        key=lambda r: r.dispatch_id,
                    )
                )
                record = DispatchRecord(step=step, send_at=oldest, recipients=recipients)
                await self._producer.send_and_wait(
                    self._topic,
                    orjson.dumps(record.to_record()),
                    key=record.batch_id.encode(),
                )
                self._metrics.sends_produced(r.dispatch_id for r in recipients)
                pipe = self._redis.pipeline(transaction=False)
                for bucket, batch in taken:
                    pipe.srem(self._keys.send_buffer(step, bucket), *batch)
                await pipe.execute()
                produced += 1
                self.records_produced += 1
                self.recipients_produced += len(recipients)
                if held:
                    break
            else:
                self._waiting.pop(step, None)  # nothing left
            await self._forget_empty(step, buckets)
        finally:
            await self._release(keys=[lease_key], args=[self._owner])
        return produced

    def observe_batch(self, seconds: float) -> None:
        """How long a micro-batch of the worker took, sends buffered included."""
        self._batch_seconds.append(seconds)

    def _hold_for(self) -> timedelta:
        longest_batch = max(self._batch_seconds, default=0.0)
        return max(self._hold, timedelta(seconds=1.5 * longest_batch))

    def _partial_may_leave(self, step: DispatchStep, count: int, now: datetime) -> bool:
        """Whether the `count` recipients held back (fewer than the size) leave now; the
        wait of the next ones held begins when these leave."""
        seen = self._waiting.get(step)
        if seen is None:
            self._waiting[step] = (count, now, now)
            return False
        seen_count, count_since, waiting_since = seen
        if count != seen_count:
            self._waiting[step] = (count, now, waiting_since)
            paused = False
        else:
            paused = now - count_since >= self._hold_for()
        if paused or now - waiting_since >= self._max_wait:
            del self._waiting[step]
            return True
        return False

    async def _take(
        self, step: DispatchStep, buckets: list[datetime], wanted: int
    ) -> list[tuple[datetime, list[bytes]]]:
        """Up to `wanted` members, oldest bucket first (read only; removed once produced)."""
        taken: list[tuple[datetime, list[bytes]]] = []
        for bucket in buckets:
            members = await self._redis.srandmember(self._keys.send_buffer(step, bucket), wanted)
            if members:
                taken.append((bucket, members))
                wanted -= len(members)
            if wanted == 0:
                break
        return taken

    async def _forget_empty(self, step: DispatchStep, buckets: list[datetime]) -> None:
        """Drops the index entries of empty sets; a send added meanwhile re-adds its entry."""
        index = self._keys.send_buffer_index_of(step)
        for bucket in buckets:
            header = _header(step, bucket)
            key = self._keys.send_buffer(step, bucket)
            if await self._redis.scard(key):
                continue
            await self._redis.zrem(index, header)
            if await self._redis.scard(key):
                await self._redis.zadd(index, {header: bucket.timestamp()})
