"""Timers on the real servers: the worker records next due times in the Redis due index after each
batch; the pump fires what the index shows due, once per lease, and corrects stale entries; a
redelivered batch repairs an entry a crash lost; an empty Redis is refilled from MongoDB; the
MongoDB sweep fires timers the index never saw."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from app.config import Settings
from app.keyspace import Keyspace
from app.streams.producer import new_producer
from app.worker.due_index import DueIndex
from app.worker.metrics import WorkerMetrics
from app.worker.partitions import partition_of
from app.worker.timer_pump import TimerPump
from tests.conftest import BOTH_REDIS
from tests.kafka_reader import read_messages, read_records
from tests.worker.conftest import event, records

pytestmark = BOTH_REDIS

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
TEACHER = {"email": "a@x.test", "first_name": "Ada", "role": "teacher"}


def due_key(unique: str, user_id: str) -> str:
    return f"{unique}:due:{{p{partition_of(user_id, 8)}}}"


@pytest.fixture
async def pump(servers: Settings, processor, redis_client, new_topic, unique):
    topic = await new_topic("timers", partitions=8)
    producer = new_producer(servers)
    await producer.start()
    index = DueIndex(redis_client, unique)
    pump = TimerPump(processor.store, index, producer, topic, 8, WorkerMetrics(), lease_seconds=30)
    pump.topic = topic  # type: ignore[attr-defined]
    pump.index = index  # type: ignore[attr-defined]
    pump.producer = producer  # type: ignore[attr-defined]
    yield pump
    await producer.stop()


async def score(redis_client, unique: str, user_id: str) -> float | None:
    return await redis_client.zscore(due_key(unique, user_id), user_id)


async def sign_up(processor, count: int) -> list[str]:
    """`count` teachers sign up at T0, each with a timer due an hour later."""
    users = [f"u-{i}" for i in range(count)]
    signups = (event(f"e{i}", u, "signed_up", T0, attributes=TEACHER) for i, u in enumerate(users))
    await processor.process(records(*signups), T0)
    return users


async def test_each_batch_records_next_due_times(processor, redis_client, unique) -> None:
    await processor.process(records(event("e1", "u-1", "signed_up", T0, attributes=TEACHER)), T0)
    assert await score(redis_client, unique, "u-1") == (T0 + HOUR).timestamp()

    stored = (await processor.store.load_many(["u-1"]))["u-1"]
    assert stored.state.next_due_at() == T0 + HOUR
    await redis_client.delete(due_key(unique, "u-1"))  # as if the worker died before recording
    await processor.process(
        records(event("e1", "u-1", "signed_up", T0, attributes=TEACHER)), T0 + timedelta(minutes=1)
    )
    assert await score(redis_client, unique, "u-1") == (T0 + HOUR).timestamp()  # redelivery


async def test_the_pump_fires_what_is_due_once_per_lease(
    servers: Settings, processor, pump, redis_client, unique
) -> None:
    users = await sign_up(processor, 5)
    partitions = range(8)
    assert await pump.pump(partitions, T0 + timedelta(minutes=59)) == 0
    assert await pump.pump(partitions, T0 + HOUR) == 5
    assert await pump.pump(partitions, T0 + HOUR + timedelta(seconds=1)) == 0  # leased
    lease_end = (T0 + HOUR + timedelta(seconds=30)).timestamp()
    assert await score(redis_client, unique, "u-0") == lease_end  # out of the due range
    messages = await read_messages(servers.kafka_bootstrap, pump.topic, 5)
    fired = [orjson.loads(m.value) for m in messages]
    assert sorted(r["user_id"] for r in fired) == users
    assert {r["due_at"] for r in fired} == {"2026-11-02T10:00:00Z"}
    # On the user's own partition (its events' partition), with the user id as the key.
    assert {(m.key.decode(), m.partition) for m in messages} == {
        (user, partition_of(user, 8)) for user in users
    }
    # Nobody processed them (a lost publish): the lease lapses and they fire again.
    assert await pump.pump(partitions, T0 + HOUR + timedelta(seconds=31)) == 5


async def test_two_pumps_never_take_the_same_timer_and_write_nothing_to_mongodb(
    servers: Settings, processor, pump, redis_client, unique
) -> None:
    users = await sign_up(processor, 20)
    other = TimerPump(processor.store, DueIndex(redis_client, unique), pump.producer, pump.topic,
                      8, WorkerMetrics(), lease_seconds=30)  # fmt: skip
    counts = await asyncio.gather(*(p.pump(range(8), T0 + HOUR) for p in (pump, other) * 3))
    assert sum(counts) == 20
    fired = await read_records(servers.kafka_bootstrap, pump.topic, 20)
    assert sorted(r["user_id"] for r in fired) == sorted(users)
    documents = await processor.store.collection.find({}, {"lease_until": 1}).to_list(None)
    assert {d.get("lease_until") for d in documents} == {None}


async def test_the_pump_corrects_stale_entries(processor, pump, redis_client, unique) -> None:
    await processor.process(records(event("e1", "u-1", "signed_up", T0, attributes=TEACHER)), T0)
    await pump.index.record([("u-1", partition_of("u-1", 8), T0), ("ghost", 3, T0)])
    assert await pump.pump(range(8), T0 + timedelta(minutes=1)) == 0
    assert await score(redis_client, unique, "u-1") == (T0 + HOUR).timestamp()
    assert await redis_client.zscore(f"{unique}:due:{{p3}}", "ghost") is None


async def test_an_empty_redis_is_refilled_without_postponing(
    processor, pump, redis_client, unique
) -> None:
    await processor.process(
        records(
            event("e1", "u-1", "signed_up", T0, attributes=TEACHER),
            event("e2", "u-2", "signed_up", T0, attributes=TEACHER),
        ),
        T0,
    )
    await redis_client.delete(due_key(unique, "u-1"), due_key(unique, "u-2"))
    earlier = T0 + timedelta(minutes=5)  # recorded by a worker while the refill ran
    await pump.index.record([("u-2", partition_of("u-2", 8), earlier)])
    assert await pump.index.refill(processor.store) == 2
    assert await score(redis_client, unique, "u-1") == (T0 + HOUR).timestamp()
    assert await score(redis_client, unique, "u-2") == earlier.timestamp()


async def test_the_sweep_fires_timers_the_index_never_saw(
    servers: Settings, processor, pump, redis_client, unique
) -> None:
    await processor.process(records(event("e1", "u-1", "signed_up", T0, attributes=TEACHER)), T0)
    await redis_client.delete(due_key(unique, "u-1"))
    assert await pump.pump(range(8), T0 + HOUR) == 0
    assert await pump.sweep(range(8), T0 + HOUR) == 1
    (fired,) = await read_records(servers.kafka_bootstrap, pump.topic, 1)
    assert fired["user_id"] == "u-1"


async def test_a_batch_is_recorded_with_one_zadd_and_one_zrem_per_partition(
    redis_client, unique
) -> None:
    index = DueIndex(redis_client, unique)
    await index.record([("done", 1, T0), ("other", 2, T0)])
    later = T0 + timedelta(minutes=1)
    pipe = redis_client.pipeline(transaction=False)
    index.queue_record(
        pipe,
        [("a", 1, T0), ("b", 1, later), ("done", 1, None), ("c", 2, later), ("a", 1, later)],
    )
    assert len(pipe) == 3  # ZADD a b, ZREM done (partition 1); ZADD c (partition 2)
    await pipe.execute()
    keys = Keyspace(unique)
    assert await redis_client.zrange(keys.due_index(1), 0, -1, withscores=True) == [
        (b"a", later.timestamp()),  # a user's last entry counts
        (b"b", later.timestamp()),
    ]
    assert await redis_client.zrange(keys.due_index(2), 0, -1) == [b"other", b"c"]
