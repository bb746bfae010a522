"""Redis as buffer: recipients of one step leave as records of batch_size up to twice it as soon
as they are that many (fewer only for what a flow brought before it paused), each exactly once,
and nothing leaves the buffer before it is on the topic."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError

from app.config import Settings
from app.dispatch.record import DispatchRecord, DispatchStep, Recipient
from app.engine.definitions import WebhookRequest
from app.keyspace import Keyspace
from app.streams.producer import new_producer
from app.topics import load_contract
from app.worker.send_buffer import Batcher, SendBuffer, send_bucket
from tests.conftest import BOTH_REDIS
from tests.kafka_reader import read_records

pytestmark = BOTH_REDIS

WELCOME = DispatchStep("onboarding", 1, "welcome", "email", "welcome")
REMINDER = DispatchStep("onboarding", 1, "reminder", "push", "reminder")
T0 = datetime(2026, 11, 2, 9, 15, 0, 400000, tzinfo=UTC)


def recipient(i: int) -> Recipient:
    return Recipient(f"u-{i}", f"{i:032x}", "en-GB", {"first_name": f"User {i}"}, f"u{i}@x.test")


def test_bucket_floors_send_time() -> None:
    assert send_bucket(T0, 1) == datetime(2026, 11, 2, 9, 15, tzinfo=UTC)
    assert send_bucket(T0 + timedelta(seconds=59), 60) == datetime(2026, 11, 2, 9, 15, tzinfo=UTC)


async def test_a_batch_of_sends_is_one_sadd_and_one_zadd_per_step_and_bucket(
    redis_client, unique: str
) -> None:
    buffer = SendBuffer(redis_client, prefix=unique)
    sends = [(WELCOME, T0, recipient(i)) for i in range(300)]
    sends += [(REMINDER, T0, recipient(i)) for i in range(5)]
    sends += [(WELCOME, T0 + timedelta(seconds=1), recipient(999)), (WELCOME, T0, recipient(1))]
    pipe = buffer.pipeline()
    buffer.queue_add(pipe, sends)
    assert len(pipe) == 6  # three buffers: their recipients, then their index entry
    await pipe.execute()
    assert await buffer.pending() == 306


async def test_records_of_batch_size_to_twice_it_each_recipient_once(
    servers: Settings, redis_client, new_topic, unique: str
) -> None:
    topic = await new_topic("send")
    buffer = SendBuffer(redis_client, prefix=unique)
    sends = [(WELCOME, T0, recipient(i)) for i in range(450)]
    await buffer.add_many(sends)
    await buffer.add_many(sends[:100])  # re-emitted after a crash: no new recipients
    await buffer.add_many([(REMINDER, T0, recipient(i)) for i in range(3)])
    await buffer.add_many([(WELCOME, T0 + timedelta(hours=1), recipient(999))])
    assert await buffer.pending() == 454

    producer = new_producer(servers)
    await producer.start()
    try:
        batcher = Batcher(redis_client, producer, topic, prefix=unique, batch_size=200)
        # 200 leave, as twice that wait, then the other 250 as one record (not as 200 and 50);
        # the 3 wait until their number stops growing.
        assert await batcher.drain_due(T0 + timedelta(seconds=1)) == 2
        assert await batcher.drain_due(T0 + timedelta(seconds=1.5)) == 0
        assert await batcher.drain_due(T0 + timedelta(seconds=2)) == 1
        assert await batcher.drain_due(T0 + timedelta(seconds=3)) == 0
    finally:
        await producer.stop()

    records = await read_records(servers.kafka_bootstrap, topic, 3)
    contract = load_contract("send")
    for record in records:
        contract.validate(record)
    welcome = [r for r in records if r["step_id"] == "welcome"]
    assert sorted(len(r["recipients"]) for r in welcome) == [200, 250]
    ids = [x["dispatch_id"] for r in welcome for x in r["recipients"]]
    assert sorted(ids) == sorted(f"{i:032x}" for i in range(450))
    assert {r["send_at"] for r in records} == {"2026-11-02T09:15:00Z"}
    (reminder,) = [r for r in records if r["step_id"] == "reminder"]
    assert reminder["channel"] == "push" and len(reminder["recipients"]) == 3
    assert DispatchRecord.from_record(reminder).batch_id == reminder["batch_id"]
    assert await buffer.pending() == 1  # the one due an hour later is still waiting


async def test_recipients_stay_buffered_when_the_produce_fails(
    servers: Settings, redis_client, unique: str
) -> None:
    buffer = SendBuffer(redis_client, prefix=unique)
    await buffer.add_many([(WELCOME, T0, recipient(i)) for i in range(5)])
    # The broker refuses nothing here, so make the client refuse: records over 100 bytes.
    producer = AIOKafkaProducer(bootstrap_servers=servers.kafka_bootstrap, max_request_size=100)
    await producer.start()
    try:
        batcher = Batcher(redis_client, producer, "never-written", prefix=unique)
        assert await batcher.drain_due(T0 + timedelta(seconds=3)) == 0  # five: wait for more
        with pytest.raises(MessageSizeTooLargeError):
            await batcher.drain_due(T0 + timedelta(seconds=4))
    finally:
        await producer.stop()
    assert await buffer.pending() == 5


async def test_a_leased_buffer_is_left_to_its_batcher(
    servers: Settings, redis_client, new_topic, unique: str
) -> None:
    topic = await new_topic("send")
    buffer = SendBuffer(redis_client, prefix=unique)
    await buffer.add_many([(WELCOME, T0, recipient(1))])
    producer = new_producer(servers)
    await producer.start()
    try:
        first = Batcher(redis_client, producer, topic, prefix=unique)
        second = Batcher(redis_client, producer, topic, prefix=unique)
        lease = f"{unique}:send-buffer:{{onboarding:1:welcome}}:lease"
        await redis_client.set(lease, "someone-else", px=30000)
        assert await first.drain_due(T0 + timedelta(seconds=3)) == 0
        assert await second.drain_due(T0 + timedelta(seconds=3)) == 0
        await redis_client.delete(lease)
        assert await first.drain_due(T0 + timedelta(seconds=3)) == 0  # one: wait for more
        assert await first.drain_due(T0 + timedelta(seconds=4)) == 1
    finally:
        await producer.stop()


async def test_a_steps_buckets_fill_one_record_oldest_first(
    servers: Settings, redis_client, new_topic, unique: str
) -> None:
    topic = await new_topic("send")
    buffer = SendBuffer(redis_client, prefix=unique)
    later = T0 + timedelta(seconds=1)
    await buffer.add_many([(WELCOME, T0, recipient(i)) for i in range(150)])
    await buffer.add_many([(WELCOME, later, recipient(i)) for i in range(150, 400)])
    producer = new_producer(servers)
    await producer.start()
    try:
        batcher = Batcher(redis_client, producer, topic, prefix=unique, batch_size=200)
        # 150 of the first bucket and 50 of the second, then the second's other 200.
        assert await batcher.drain_due(later) == 2
        assert await buffer.pending() == 0
        await buffer.add_many([(WELCOME, later, recipient(i)) for i in range(400, 450)])
        assert await batcher.drain_due(later + timedelta(seconds=0.9)) == 0  # grew: wait
        assert await batcher.drain_due(later + timedelta(seconds=1.5)) == 0  # still in the hold
        assert await batcher.drain_due(later + timedelta(seconds=1.9)) == 1  # paused 1 s: leave
    finally:
        await producer.stop()
    records = await read_records(servers.kafka_bootstrap, topic, 3)
    first, *others = sorted(records, key=lambda r: (r["send_at"], -len(r["recipients"])))
    assert first["send_at"] == "2026-11-02T09:15:00Z" and len(first["recipients"]) == 200
    assert {f"{i:032x}" for i in range(150)} <= {r["dispatch_id"] for r in first["recipients"]}
    assert [(r["send_at"], len(r["recipients"])) for r in others] == [
        ("2026-11-02T09:15:01Z", 200),
        ("2026-11-02T09:15:01Z", 50),
    ]
    assert await buffer.pending() == 0
    for index in Keyspace(unique).send_buffer_indexes():
        assert await redis_client.zcard(index) == 0


@pytest.fixture
async def sending(servers: Settings, redis_client, new_topic, unique: str):
    """A send topic of its own, an empty send buffer and a started producer."""
    topic = await new_topic("send")
    producer = new_producer(servers)
    await producer.start()
    yield topic, SendBuffer(redis_client, prefix=unique), producer
    await producer.stop()


async def test_a_trickle_leaves_after_the_max_wait(
    servers: Settings, sending, redis_client, unique: str
) -> None:
    topic, buffer, producer = sending
    batcher = Batcher(redis_client, producer, topic, prefix=unique, max_wait_seconds=5)
    for second in range(5):  # one more recipient every half second: never a pause
        await buffer.add_many([(WELCOME, T0, recipient(second * 2))])
        assert await batcher.drain_due(T0 + timedelta(seconds=second)) == 0
        await buffer.add_many([(WELCOME, T0, recipient(second * 2 + 1))])
        assert await batcher.drain_due(T0 + timedelta(seconds=second + 0.5)) == 0
    await buffer.add_many([(WELCOME, T0, recipient(10))])
    assert await batcher.drain_due(T0 + timedelta(seconds=5)) == 1
    (record,) = await read_records(servers.kafka_bootstrap, topic, 1)
    assert len(record["recipients"]) == 11


async def test_the_hold_outlasts_the_pause_between_slow_micro_batches(
    servers: Settings, sending, redis_client, unique: str
) -> None:
    topic, buffer, producer = sending
    batcher = Batcher(
        redis_client, producer, topic, prefix=unique, hold_seconds=1, max_wait_seconds=10
    )
    batcher.observe_batch(2.0)  # micro-batches take 2 s: hold 3 s
    await buffer.add_many([(WELCOME, T0, recipient(i)) for i in range(80)])
    assert await batcher.drain_due(T0) == 0
    assert await batcher.drain_due(T0 + timedelta(seconds=2.5)) == 0  # between two batches
    await buffer.add_many([(WELCOME, T0, recipient(i)) for i in range(80, 160)])
    assert await batcher.drain_due(T0 + timedelta(seconds=2.6)) == 0  # grew: wait for more
    assert await batcher.drain_due(T0 + timedelta(seconds=5.5)) == 0  # unchanged for 2.9 s
    assert await batcher.drain_due(T0 + timedelta(seconds=5.7)) == 1  # paused 3.1 s: leave
    (record,) = await read_records(servers.kafka_bootstrap, topic, 1)
    assert len(record["recipients"]) == 160


async def test_a_webhook_steps_request_leaves_the_buffer_with_its_record(
    servers: Settings, redis_client, new_topic, unique: str
) -> None:
    topic = await new_topic("send")
    request = WebhookRequest("https://crm.test/h", "PUT", (("X-Team", "lifecycle"),), '{"u": 1}')
    hook = DispatchStep("onboarding", 1, "crm", "webhook", "welcome", request)
    buffer = SendBuffer(redis_client, prefix=unique)
    await buffer.add_many([(hook, T0, recipient(i)) for i in range(3)])
    producer = new_producer(servers)
    await producer.start()
    try:
        batcher = Batcher(redis_client, producer, topic, prefix=unique, batch_size=4)
        assert await batcher.drain_due(T0 + timedelta(seconds=1)) == 0  # three: wait for more
        assert await batcher.drain_due(T0 + timedelta(seconds=2)) == 1
    finally:
        await producer.stop()
    (record,) = await read_records(servers.kafka_bootstrap, topic, 1)
    load_contract("send").validate(record)
    assert DispatchRecord.from_record(record).step == hook
    assert await buffer.pending() == 0


async def test_a_flow_of_sends_leaves_in_records_of_at_least_the_size(
    servers: Settings, sending, redis_client, unique: str
) -> None:
    """1,450 sends of one step arriving over three seconds, in micro-batches, drained as a
    worker drains them: records of 200 to 399 as they fill, one more for the remainder (eight
    at most), and nothing held much longer than the hold once the flow stops."""
    topic, buffer, producer = sending
    batcher = Batcher(redis_client, producer, topic, prefix=unique, batch_size=200)
    added = 0
    while added < 1_450:
        now = datetime.now(UTC)
        await buffer.add_many([(WELCOME, now, recipient(added + i)) for i in range(50)])
        added += 50
        await batcher.drain_due(now)
        await asyncio.sleep(0.1)
    stopped = time.monotonic()
    while await buffer.pending():
        assert time.monotonic() - stopped < 2.5, "the remainder outstayed the hold"
        await batcher.drain_due(datetime.now(UTC))
        await asyncio.sleep(0.05)
    assert batcher.records_produced <= 1_450 // 200 + 1
    records = await read_records(servers.kafka_bootstrap, topic, batcher.records_produced)
    sizes = sorted(len(r["recipients"]) for r in records)
    assert sizes[1] >= 200 and sizes[-1] < 400 and sum(sizes) == 1_450
    ids = {x["dispatch_id"] for r in records for x in r["recipients"]}
    assert ids == {f"{i:032x}" for i in range(1_450)}
