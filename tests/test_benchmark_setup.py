"""The benchmark's own setup code against the real servers, at a size of a few users: CI does not
run `scripts/bench`, and a setup step that no longer fits the code it builds on must fail here,
not at the start of a long run."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from app.config import Settings
from app.keyspace import Keyspace
from app.redis_client import new_redis
from app.store.mongo import close_client, new_client
from app.topics import load_contract
from benchmarks.run import park_users, typical_user_document
from benchmarks.scale import burst, crash, merged_lateness, takeover_seconds


async def test_parked_users_are_stored_and_indexed_as_a_worker_leaves_them(
    servers: Settings,
) -> None:
    run = uuid.uuid4().hex[:8]
    settings = dataclasses.replace(servers, mongo_db=f"test_{run}", redis_prefix=f"test-{run}")
    await park_users(settings, 5, chunk=2)
    client, redis = new_client(settings), new_redis(settings)
    try:
        users = client[settings.mongo_db]["users"]
        documents = [d async for d in users.find({})]
        assert sorted(d["_id"] for d in documents) == [f"parked-{i:07d}" for i in range(5)]
        assert all(d["next_due_at"] is not None for d in documents)
        keys = Keyspace(settings.redis_prefix)
        partitions = range(load_contract("timers").partitions)
        indexed = [await redis.zcard(keys.due_index(p)) for p in partitions]
        assert sum(indexed) == 5
    finally:
        await client.drop_database(settings.mongo_db)
        await redis.aclose()
        await close_client(client)


def test_the_typical_user_document_is_a_stored_user() -> None:
    document = typical_user_document({"events": 4, "users": 2})
    assert document["_id"] == "user-0000000" and document["journeys"]


async def test_the_scale_mode_runs_its_burst_through_a_worker_and_measures_each_process(
    servers: Settings,
) -> None:
    size = {"users": 20, "events": 40, "cas": 10}
    run = await burst(servers, size, workers=1)
    assert run["events"] == 40 and run["events_per_s"] > 0 and run["ratio_to_store"] > 0
    assert {"worker-1", "mongo", "kafka", "benchmark", "workers", "all"} <= set(run["cores"])


async def test_the_scale_mode_kills_one_of_two_workers_and_the_timers_still_fire(
    servers: Settings,
) -> None:
    size = {"timer_rate": 5, "crash_phase_s": 8}
    crash_run = await crash(servers, size, session_timeout=6.0)  # returns once all 40 sent
    assert crash_run["timers"] == 40 and crash_run["timers_applied"] > 0
    assert crash_run["takeover_s"] > 0 and crash_run["timer_lateness_max_s"] > 0


def test_several_workers_lateness_is_merged_by_how_many_timers_each_applied() -> None:
    # One worker applied 900 timers 1 s late, the other 100 timers 20 s late.
    snapshots = [
        {"timer_lateness_samples": 900, "timer_lateness_percentiles": [1.0] * 101},
        {"timer_lateness_samples": 100, "timer_lateness_percentiles": [20.0] * 101},
    ]
    merged = merged_lateness(snapshots)
    assert merged == {"timers_applied": 1000, "p50": 1.0, "p99": 20.0, "max": 20.0}


def test_takeover_is_from_the_kill_to_the_last_partition_that_resumed() -> None:
    published = [(0, 10.0), (1, 10.5), (0, 11.2), (1, 19.0), (0, 19.5)]
    assert takeover_seconds(published, killed_at=11.0) == 8.0
    with pytest.raises(RuntimeError, match=r"partitions \[1\] never resumed"):
        takeover_seconds([(0, 10.0), (1, 10.5), (0, 11.2)], killed_at=11.0)
