"""The repartition step on real Kafka: whatever key a user-events record came with (the user id,
none, another one), its valid records land on user-events-by-user keyed by user id, on the
partition `partition_of` gives, unchanged and with their original timestamps, in order; bad ones
come back as dead letters; mis-keyed ones are counted and logged now and then, without their
content."""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from app.config import Settings, WorkerSettings
from app.store.mongo import close_client
from app.streams.producer import new_producer
from app.worker.metrics import WorkerMetrics
from app.worker.partitions import partition_of
from app.worker.processor import InputRecord
from app.worker.repartition import REPORT_EVERY, Repartitioner
from app.worker.runtime import WorkerRuntime
from tests.kafka_reader import read_messages
from tests.worker.conftest import event

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "app.worker.repartition"]


@pytest.fixture
async def step(servers: Settings, new_topic):
    topic = await new_topic("user-events-by-user", partitions=8)
    producer = new_producer(servers)
    await producer.start()
    metrics = WorkerMetrics()
    step = Repartitioner(producer, topic, 8, metrics, max_record_bytes=64 * 1024)
    step.topic = topic  # type: ignore[attr-defined]
    step.metrics = metrics  # type: ignore[attr-defined]
    yield step
    await producer.stop()


def user_event(
    offset: int, user: str, key: bytes | None, name: str = "added_to_cart"
) -> InputRecord:
    value = orjson.dumps(event(f"e{offset}", user, name, T0))
    # Produced from a few partitions, as by a client hashing keys some other way.
    return InputRecord(
        "user-events", offset % 3, offset, key, value, T0 + timedelta(seconds=offset)
    )


async def test_records_land_on_their_users_partition_whatever_their_key(
    servers: Settings, step, caplog
) -> None:
    users = [f"u-{i}" for i in range(10)]
    batch = [
        *(user_event(i, user, user.encode()) for i, user in enumerate(users)),
        user_event(10, "u-1", None, "purchased"),
        user_event(11, "u-2", b"session-7f3a", "purchased"),
        user_event(12, "u-1", b"", "reviewed"),
        InputRecord("user-events", 0, 13, b"u-3", b"{not json", T0),
        InputRecord("user-events", 1, 14, None, orjson.dumps({"user_id": "u-4"}), T0),
    ]
    with caplog.at_level(logging.WARNING):
        letters = await step.process(batch, T0)

    assert [(letter.offset, letter.source_topic) for letter in letters] == [
        (13, "user-events"),
        (14, "user-events"),
    ]
    assert "not JSON" in letters[0].reason
    assert "'event_id' is a required property" in letters[1].reason

    messages = await read_messages(servers.kafka_bootstrap, step.topic, 13)
    sources = {orjson.loads(r.value)["event_id"]: r for r in batch[:13]}
    for message in messages:
        source = sources[orjson.loads(message.value)["event_id"]]
        user = orjson.loads(source.value)["user_id"]
        assert message.key == user.encode()
        assert message.partition == partition_of(user, 8)
        assert message.value == source.value
        assert message.timestamp == round(source.timestamp.timestamp() * 1000)
    u1 = [orjson.loads(m.value)["name"] for m in messages if m.key == b"u-1"]
    assert u1 == ["added_to_cart", "purchased", "reviewed"]  # in order, on one partition
    assert len({m.partition for m in messages}) > 1

    assert (step.metrics.repartitioned, step.metrics.miskeyed) == (13, 3)
    (warning,) = warnings(caplog)
    assert warning.getMessage().startswith("3 user-events records had no key or a key other")
    assert "u-" not in warning.getMessage() and "session" not in warning.getMessage()


async def test_mis_keyed_records_are_logged_at_most_once_a_minute(step, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        await step.process([user_event(0, "u-1", None)], T0)
        await step.process([user_event(1, "u-1", b"other")], T0 + REPORT_EVERY / 2)
        await step.process([user_event(2, "u-1", b"u-1")], T0 + REPORT_EVERY / 2)
        assert [r.getMessage()[:2] for r in warnings(caplog)] == ["1 "]
        await step.process([user_event(3, "u-1", b"u-1")], T0 + REPORT_EVERY)
    assert [r.getMessage()[:2] for r in warnings(caplog)] == ["1 ", "1 "]
    assert step.metrics.miskeyed == 2


async def test_a_worker_refuses_a_topic_whose_partitions_differ_from_its_contract(
    servers: Settings, unique: str
) -> None:
    """Records are produced to explicit partitions: a by-user topic of 1 partition (say, created
    by the broker on first use) would fail every one of them."""
    topics = {unique + "timers": 8, unique + "user-events-by-user": 1}
    admin = AIOKafkaAdminClient(bootstrap_servers=servers.kafka_bootstrap)
    await admin.start()
    runtime = WorkerRuntime(dataclasses.replace(servers, topic_prefix=unique), WorkerSettings())
    try:
        await admin.create_topics([NewTopic(t, count, 1) for t, count in topics.items()])
        with pytest.raises(RuntimeError, match="has 1 partitions, its contract says 8"):
            await runtime.start()
    finally:
        await runtime.producer.stop()
        await runtime.redis.aclose()
        await close_client(runtime.mongo)
        await admin.delete_topics(list(topics))
        await admin.close()
