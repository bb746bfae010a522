"""The worker's user cache: bounded in bytes however many users it sees, least recently used out
first, a copy of its own for each load, nothing left behind by a batch that failed or ran across a
rebalance; and on the wire, a second batch of the same users reads nothing, while a document
changed behind the worker's back is a conflict, read again."""

from __future__ import annotations

import random
import tracemalloc
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from motor.motor_asyncio import AsyncIOMotorClient

from app.authoring.files import load_journey
from app.config import Settings, WorkerSettings
from app.engine import JourneyEngine, UserState
from app.store.users import StoredUser, UserCommit, UserStore
from app.worker.app import create_app
from app.worker.user_cache import ENTRY_OVERHEAD, UserCache
from tests.worker.conftest import EXAMPLES, event, records

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
KIB = 1024
MIB = 1024 * KIB


@pytest.fixture
async def offline_store() -> AsyncIterator[UserStore]:
    """A store on a port nothing listens on: a load the cache answers whole sends no query (one
    that did would fail within the selection timeout)."""
    client: AsyncIOMotorClient = AsyncIOMotorClient(
        "mongodb://127.0.0.1:9", serverSelectionTimeoutMS=300, tz_aware=True
    )
    yield UserStore(client["offline"], 50)
    client.close()


def written(user_id: str, version: int, **attributes: object) -> UserCommit:
    """The commit of a user computed from `version - 1`, as the processor would make it."""
    state = UserState.new(user_id)
    state.version = version
    state.attributes = dict(attributes)
    state.sends = [{"channel": "email", "at": T0}]
    state.applied = ["user-events:0:1"]
    return UserCommit(StoredUser(user_id, state, version - 1), version - 1, 3)


def cost(user_id: str, document: bytes) -> int:
    return len(document) + len(user_id) + ENTRY_OVERHEAD


def test_the_cache_never_holds_more_than_its_bound_however_many_users() -> None:
    bound = 256 * KIB
    cache = UserCache(bound)
    sizes = random.Random(7)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        largest = 0
        for i in range(20_000):
            cache.put(f"user-{i:07d}", bytes(sizes.randrange(300, 3_000)))
            largest = max(largest, cache.size)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert largest <= bound
    assert held <= bound  # what it counts covers what it takes
    assert 60 <= len(cache) < 200  # full, of the latest users only
    assert f"user-{19_999:07d}" in cache and f"user-{0:07d}" not in cache


def test_least_recently_used_go_first_and_what_does_not_fit_is_not_kept() -> None:
    document = bytes(1_000)
    cache = UserCache(3 * cost("u-a", document))
    for user_id in ("u-a", "u-b", "u-c"):
        cache.put(user_id, document)
    cache.put("u-a", document)  # used again: now the most recent
    cache.put("u-d", document)
    assert [u for u in ("u-a", "u-b", "u-c", "u-d") if u in cache] == ["u-a", "u-c", "u-d"]
    assert cache.size == 3 * cost("u-a", document)
    cache.put("u-big", bytes(4_000))
    assert "u-big" not in cache and len(cache) == 3
    disabled = UserCache(0)
    disabled.put("u-a", document)
    assert len(disabled) == 0 and disabled.size == 0


async def test_a_load_takes_its_users_out_and_settling_puts_back_the_latest(
    offline_store: UserStore,
) -> None:
    first, other = written("u-1", 1), written("u-2", 1)
    cache = UserCache(64 * KIB)
    cache.put("u-1", first.stored.raw)
    cache.put("u-2", other.stored.raw)
    users = await cache.load_many(offline_store, ["u-1"])
    assert users["u-1"].version == 1 and "u-1" not in cache
    cache.settle([], set())
    cache.put("u-3", written("u-3", 1).stored.raw)
    cache.put("u-4", written("u-4", 1).stored.raw)
    assert "u-1" in cache
    cache.max_bytes = cache.size - 1  # room for one less: the least recently used goes
    cache.put("u-4", written("u-4", 1).stored.raw)
    assert "u-2" not in cache and "u-1" in cache


async def test_each_load_is_a_copy_of_its_own(offline_store: UserStore) -> None:
    cache = UserCache(64 * KIB)
    cache.put("u-1", written("u-1", 4, plan="free").stored.raw)
    users = await cache.load_many(offline_store, ["u-1"])
    user = users["u-1"]
    user.state.attributes["plan"] = "pro"
    user.state.sends.append({"channel": "sms", "at": T0})
    user.state.applied.append("user-events:0:2")
    user.outbox.append({"kind": "analytics"})
    user.source_offsets["user-events"] = {"0": 2}
    cache.settle([], set())  # unchanged, as far as any commit says: back as it was loaded
    again = (await cache.load_many(offline_store, ["u-1"]))["u-1"]
    assert again.state.attributes == {"plan": "free"}
    assert again.state.sends == [{"channel": "email", "at": T0}]
    assert again.state.applied == ["user-events:0:1"]
    assert again.outbox == [] and again.source_offsets == {}
    assert again.version == 4


async def test_a_failed_batch_leaves_none_of_its_users_and_a_commit_the_latest(
    offline_store: UserStore,
) -> None:
    cache = UserCache(64 * KIB)
    for user_id in ("u-1", "u-2", "u-3", "u-4"):
        cache.put(user_id, written(user_id, 1).stored.raw)
    await cache.load_many(offline_store, ["u-1", "u-2"])  # a batch that raises: no settle
    users = await cache.load_many(offline_store, ["u-3", "u-4"])
    assert "u-1" not in cache and "u-2" not in cache
    for user in users.values():
        user.state.version += 1
    keeps_version = UserCommit(users["u-4"], 2, 3)  # only its parked inputs changed
    commits = [UserCommit(users["u-3"], 1, 3), keeps_version]
    cache.settle(commits, conflicts=set())
    assert (await cache.load_many(offline_store, ["u-3"]))["u-3"].version == 2
    assert "u-4" not in cache  # a write that kept the version is read again
    cache.settle([UserCommit(users["u-3"], 2, 3)], conflicts={"u-3"})
    assert "u-3" not in cache  # the store had another version: read again


async def test_a_clear_forgets_every_user_and_what_a_batch_in_flight_took(
    offline_store: UserStore,
) -> None:
    cache = UserCache(64 * KIB)
    cache.put("u-1", written("u-1", 1).stored.raw)
    cache.put("u-2", written("u-2", 1).stored.raw)
    users = await cache.load_many(offline_store, ["u-1"])
    cache.clear()
    assert len(cache) == 0 and cache.size == 0
    users["u-1"].state.version = 2
    cache.settle([UserCommit(users["u-1"], 1, 3)], set())
    assert len(cache) == 0


async def test_a_rebalance_clears_the_workers_cache() -> None:
    app, runtime = create_app(Settings(), WorkerSettings(user_cache_bytes=64 * KIB))
    for signal in (app.on_partitions_revoked, app.on_partitions_assigned):
        runtime.user_cache.put("u-1", written("u-1", 1).stored.raw)
        await signal.send(set())
        assert len(runtime.user_cache) == 0


def user_finds(commands) -> list[list[dict]]:
    return [shapes for c, name, shapes in commands.seen if c == "users" and name == "find"]


async def test_a_second_batch_of_the_same_users_reads_nothing(make_processor, watched) -> None:
    database, commands = watched
    engine = JourneyEngine([load_journey(EXAMPLES / "classdojo-activation.yaml")])
    processor = await make_processor(engine, UserCache(MIB), database)
    commands.seen.clear()
    teacher = {"email": "a@x.test", "first_name": "Ada", "role": "teacher"}
    first = records(
        event("e1", "u-1", "signed_up", T0, attributes=teacher),
        event("e2", "u-2", "signed_up", T0, attributes={**teacher, "email": "b@x.test"}),
    )
    assert await processor.process(first, T0 + timedelta(minutes=1)) == []
    assert len(user_finds(commands)) == 1  # new users: looked for once

    commands.seen.clear()
    second = records(
        event("e3", "u-1", "opened_app", T0 + timedelta(minutes=2)),
        event("e4", "u-2", "opened_app", T0 + timedelta(minutes=2)),
        offset=2,
    )
    assert await processor.process(second, T0 + timedelta(minutes=3)) == []
    assert user_finds(commands) == []
    assert [name for c, name, _ in commands.seen if c == "users"] == ["update"]
    stored = await processor.store.load_many(["u-1", "u-2"])
    assert {u: s.source_offsets for u, s in stored.items()} == {
        "u-1": {"user-events": {"0": 2}},
        "u-2": {"user-events": {"0": 3}},
    }
    assert [s.state.applied for s in stored.values()] == [
        ["event:e1", "event:e3"],
        ["event:e2", "event:e4"],
    ]


async def test_a_version_bumped_behind_the_workers_back_is_a_conflict_read_again(
    make_processor, watched
) -> None:
    database, commands = watched
    engine = JourneyEngine([load_journey(EXAMPLES / "classdojo-activation.yaml")])
    processor = await make_processor(engine, UserCache(MIB), database)
    teacher = {"email": "a@x.test", "first_name": "Ada", "role": "teacher"}
    await processor.process(records(event("e1", "u-1", "signed_up", T0, attributes=teacher)), T0)
    version = (await processor.store.load_many(["u-1"]))["u-1"].version
    await processor.store.collection.update_one(
        {"_id": "u-1"}, {"$set": {"attributes.plan": "pro"}, "$inc": {"version": 1}}
    )

    commands.seen.clear()
    later = records(event("e2", "u-1", "opened_app", T0 + timedelta(minutes=1)), offset=1)
    assert await processor.process(later, T0 + timedelta(minutes=1)) == []
    assert [shape["_id"] for (shape,) in user_finds(commands)] == [{"$in": ["u-1"]}] * 2
    stored = (await processor.store.load_many(["u-1"]))["u-1"]
    assert stored.state.attributes["plan"] == "pro"  # recomputed from what the store held
    assert stored.version == version + 2
    assert stored.state.applied == ["event:e1", "event:e2"]

    commands.seen.clear()
    again = records(event("e3", "u-1", "opened_app", T0 + timedelta(minutes=2)), offset=2)
    assert await processor.process(again, T0 + timedelta(minutes=2)) == []
    assert user_finds(commands) == []  # cached again, as written after the conflict
    assert (await processor.store.load_many(["u-1"]))["u-1"].version == version + 3
