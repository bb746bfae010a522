"""Recurring journeys: each tick in each user's time zone enters each audience member once, and a
round cut short is resumed by the next scheduler without entering anyone twice."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson

from app.authoring.files import load_journey
from app.engine import JourneyEngine, UserState
from app.store.schedule_runs import ScheduleRuns
from app.store.users import StoredUser, UserCommit, UserStore
from app.streams.producer import new_producer
from app.worker.partitions import partition_of
from app.worker.scheduler import Scheduler
from tests.kafka_reader import read_messages

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOW = datetime(2026, 11, 9, 8, 0, 30, tzinfo=UTC)  # a Monday


async def add_user(store: UserStore, user_id: str, role: str, zone: str | None) -> None:
    state = UserState.new(user_id)
    state.attributes, state.timezone, state.version = {"role": role}, zone, 1
    await store.commit_many([UserCommit(StoredUser(user_id, state), 0, 0)])


async def test_ticks_per_time_zone_resume_and_never_enter_twice(
    servers, store_db, new_topic
) -> None:
    topic = await new_topic("timers", partitions=8)
    store = UserStore(store_db, servers.mongo_bulk_ops)
    for user_id, role, zone in [
        ("paris-1", "parent", "Europe/Paris"),
        ("paris-2", "parent", "Europe/Paris"),
        ("paris-3", "parent", "Europe/Paris"),
        ("utc-1", "parent", None),
        ("utc-2", "parent", "UTC"),
        ("tokyo-1", "parent", "Asia/Tokyo"),
        ("teacher", "teacher", "Europe/Paris"),
    ]:
        await add_user(store, user_id, role, zone)
    await ScheduleRuns(store_db).set_checked_until(
        "weekly-summary", datetime(2026, 11, 8, 22, 0, tzinfo=UTC)
    )
    engine = JourneyEngine([load_journey(EXAMPLES / "weekly-summary.yaml")])
    producer = new_producer(servers)
    await producer.start()
    try:
        first = Scheduler(store_db, store, producer, topic, 8, page_size=2)
        assert await first.run(engine, NOW, max_pages=2) == 3  # cut short: a leader died
        second = Scheduler(store_db, store, producer, topic, 8, page_size=2)
        assert await second.run(engine, NOW) == 3
        assert await second.run(engine, NOW) == 0
    finally:
        await producer.stop()

    messages = await read_messages(servers.kafka_bootstrap, topic, 6, timeout=20)
    assert all(m.partition == partition_of(m.key.decode(), 8) for m in messages)
    records = [orjson.loads(m.value) for m in messages]
    entries = sorted((r["user_id"], r["tick"]) for r in records)
    assert entries == [
        ("paris-1", "2026-11-09T07:00:00Z"),
        ("paris-2", "2026-11-09T07:00:00Z"),
        ("paris-3", "2026-11-09T07:00:00Z"),
        ("tokyo-1", "2026-11-08T23:00:00Z"),
        ("utc-1", "2026-11-09T08:00:00Z"),
        ("utc-2", "2026-11-09T08:00:00Z"),
    ]


async def test_no_scheduled_journey_reads_nothing(servers, watched) -> None:
    database, commands = watched
    store = UserStore(database, servers.mongo_bulk_ops)
    await add_user(store, "ada", "parent", "Europe/Paris")
    commands.seen.clear()
    engine = JourneyEngine([load_journey(EXAMPLES / "demo-onboarding.yaml")])
    producer = new_producer(servers)
    await producer.start()
    try:
        assert await Scheduler(database, store, producer, "unused", 8).run(engine, NOW) == 0
    finally:
        await producer.stop()
    assert commands.seen == []


async def test_time_zones_are_kept_as_users_are_written_not_scanned(servers, watched) -> None:
    database, commands = watched
    store = UserStore(database, servers.mongo_bulk_ops)
    # A user stored before zones were recorded (an earlier version of Journeys wrote it).
    await store.collection.insert_one({"_id": "old", "timezone": "America/Denver", "version": 1})
    await add_user(store, "ada", "parent", "Europe/Paris")
    await add_user(store, "bo", "parent", None)
    assert await store.time_zones() == ["America/Denver", "Europe/Paris", "UTC"]

    commands.seen.clear()
    await add_user(UserStore(database, servers.mongo_bulk_ops), "cy", "parent", "Asia/Tokyo")
    await add_user(store, "di", "parent", "Europe/Paris")  # a zone this store recorded: no write
    zones = await UserStore(database, servers.mongo_bulk_ops).time_zones()
    assert zones == ["America/Denver", "Asia/Tokyo", "Europe/Paris", "UTC"]
    assert [(c, name) for c, name, _ in commands.seen if c == "time_zones" and name != "find"] == [
        ("time_zones", "update")
    ]
    assert not [name for c, name, _ in commands.seen if c == "users" and name != "insert"]
