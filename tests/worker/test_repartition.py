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


def on_partition(offset: int, user: str, partition: int, **fields: object) -> InputRecord:
    value = orjson.dumps({**event(f"e{offset}", user, "added_to_cart", T0), **fields})
    return InputRecord("user-events", partition, offset, user.encode(), value, T0)


def in_place(step: Repartitioner, record: InputRecord) -> bool:
    kept, moved = step.split([record], T0)
    assert len(kept) + len(moved) == 1
    return bool(kept)


def test_a_record_on_its_users_partition_is_applied_in_place_and_the_others_are_copied() -> None:
    """In place: a user id whose partition the record is on, and a known time zone or none."""
    metrics = WorkerMetrics()
    step = Repartitioner(None, "by-user", 8, metrics, 64 * 1024, source_partitions=8)  # type: ignore[arg-type]
    home = partition_of("u-1", 8)
    away = (home + 1) % 8
    assert in_place(step, on_partition(0, "u-1", home))
    assert in_place(step, on_partition(1, "u-1", home, timezone="Europe/Paris"))
    assert not in_place(step, on_partition(2, "u-1", away))
    # The copy step dead-letters these (or, for the zone, says so and copies it).
    assert not in_place(step, on_partition(3, "u-1", home, timezone="America/LosAngeles"))
    assert not in_place(step, on_partition(4, "u-1", home, timezone=7))
    assert not in_place(step, InputRecord("user-events", home, 5, b"u-1", b"{not json", T0))
    assert not in_place(step, InputRecord("user-events", home, 6, b"u-1", b"[1]", T0))
    assert not in_place(step, InputRecord("user-events", home, 7, b"u-1", None, T0))
    big = on_partition(8, "u-1", home, properties={"note": "x" * 70_000})
    assert not in_place(step, big)
    # A user id that is not a string is the copy step's to refuse.
    unkeyed = InputRecord("user-events", home, 9, None, orjson.dumps({"user_id": 1}), T0)
    assert not in_place(step, unkeyed)
    assert metrics.miskeyed == 0  # counted where the record is handled


def test_a_record_applied_in_place_with_another_key_is_counted_as_mis_keyed(caplog) -> None:
    metrics = WorkerMetrics()
    step = Repartitioner(None, "by-user", 8, metrics, 64 * 1024, source_partitions=8)  # type: ignore[arg-type]
    home = partition_of("u-1", 8)
    record = dataclasses.replace(on_partition(0, "u-1", home), key=b"session-7f3a")
    with caplog.at_level(logging.WARNING):
        kept, moved = step.split([record, on_partition(1, "u-1", home)], T0)
    assert (len(kept), moved, metrics.miskeyed) == (2, [], 1)
    (warning,) = warnings(caplog)
    assert warning.getMessage().startswith("1 user-events records had no key or a key other")


def test_with_another_partition_count_on_user_events_every_record_is_copied() -> None:
    """Partition p of user-events is not by-user partition p then: the worker that owns one
    does not own the user's inputs."""
    step = Repartitioner(None, "by-user", 8, WorkerMetrics(), 64 * 1024, source_partitions=12)  # type: ignore[arg-type]
    home = partition_of("u-1", 8)
    assert not in_place(step, on_partition(0, "u-1", home))


@pytest.mark.parametrize(("source_partitions", "applied_in_place"), [(8, True), (12, False)])
async def test_a_worker_applies_in_place_only_when_user_events_has_the_contracts_count(
    servers: Settings, unique: str, source_partitions: int, applied_in_place: bool
) -> None:
    """The worker reads user-events' partition count at start: partition p of a topic with
    another count is not the user's partition p, which Faust gives another worker."""
    topics = {
        unique + "user-events": source_partitions,
        unique + "user-events-by-user": 8,
        unique + "timers": 8,
    }
    admin = AIOKafkaAdminClient(bootstrap_servers=servers.kafka_bootstrap)
    await admin.start()
    own = dataclasses.replace(
        servers, topic_prefix=unique, redis_prefix=unique, mongo_db=f"test_{unique[:-1]}"
    )
    runtime = WorkerRuntime(own, WorkerSettings())
    try:
        await admin.create_topics([NewTopic(t, count, 1) for t, count in topics.items()])
        await runtime.start()
        record = on_partition(0, "u-1", partition_of("u-1", 8))
        in_place, moved = runtime.repartitioner.split([record], T0)
        assert (in_place, moved) == (([record], []) if applied_in_place else ([], [record]))
        await runtime.mongo.drop_database(own.mongo_db)
    finally:
        await runtime.stop()
        await admin.delete_topics(list(topics))
        await admin.close()
