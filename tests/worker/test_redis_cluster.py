"""Redis Cluster: how `REDIS_URL` names one; the loss of one master's data (a restart of that
master, which keeps nothing) found by its epoch key and recovered from MongoDB; and a live worker
and sender on the cluster delivering what the simulator says."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster

from app.config import Settings
from app.redis_client import cluster_nodes, new_redis
from app.worker.branch_lock import BranchLock
from app.worker.due_index import DueIndex
from app.worker.redis_recovery import RedisRecovery
from tests.conftest import REDIS_CLUSTER_URL, ROOT
from tests.differential import engine_of, oracle, provider, report, settle
from tests.pipeline import Pipeline, live_pipeline, signups
from tests.worker.test_timers import T0, due_key, sign_up


def test_a_cluster_url_names_its_nodes() -> None:
    assert cluster_nodes("redis+cluster://h1:7001,h2:7002/") == [("h1", 7001), ("h2", 7002)]
    assert cluster_nodes("rediss+cluster://user:p%40ss@h1:7001") == [("h1", 7001)]
    client = new_redis(Settings(redis_url=REDIS_CLUSTER_URL))
    assert isinstance(client, RedisCluster)
    assert not isinstance(new_redis(Settings(redis_url="redis://h1:6380/0")), RedisCluster)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis+cluster:///", "expected at least one host:port"),
        ("redis+cluster://h1:7001,h2/", "found node 'h2', expected host:port"),
        ("redis+cluster://h1:7001/2", "a Redis Cluster has only database 0"),
    ],
)
def test_a_bad_cluster_url_says_what_is_expected(url: str, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        new_redis(Settings(redis_url=url))


async def master_port(client: RedisCluster, key: str) -> int:
    slot = client.keyslot(key)
    for (low, high), node in (await client.cluster_slots()).items():
        if low <= slot <= high:
            return node["primary"][1]
    raise AssertionError(f"no master serves slot {slot}")


def restart_master(port: int) -> None:
    """Stops the node on `port` (nothing kept on disk) and starts it again: it rejoins with its
    slots, empty."""
    node = f"redis-cluster-{port - 7000}"
    services = str(ROOT / "scripts" / "services")
    subprocess.run([services, "down", node], check=True)
    subprocess.run([services, "up", "redis-cluster"], check=True)


@pytest.mark.parametrize("redis_kind", ["redis-cluster"], indirect=True)
async def test_the_loss_of_one_master_is_found_and_nothing_is_lost(
    processor, store_db, redis_client, unique
) -> None:
    users = await sign_up(processor, 40)  # a welcome each, and a timer each an hour later
    recovery = RedisRecovery(
        redis_client,
        unique,
        BranchLock(redis_client, unique, 3600),
        processor.buffer,
        store_db,
        DueIndex(redis_client, unique),
        processor.store,
    )
    now = T0 + timedelta(minutes=1)
    await recovery.check(now)  # the first check sets an epoch key on every master
    assert await recovery.check(now) == 0  # nothing lost
    pending = await processor.buffer.pending()
    due = {user: await redis_client.zscore(due_key(unique, user), user) for user in users}
    assert pending > 0 and None not in due.values()

    lost = await master_port(redis_client, due_key(unique, users[0]))
    restart_master(lost)
    assert await redis_client.zscore(due_key(unique, users[0]), users[0]) is None

    assert await recovery.check(now) > 0  # the welcomes put back
    assert await processor.buffer.pending() == pending
    assert {user: await redis_client.zscore(due_key(unique, user), user) for user in users} == due
    assert await recovery.check(now) == 0  # found once


@pytest.fixture
async def cluster_pipeline(redis_cluster: Settings, tmp_path: Path) -> AsyncIterator[Pipeline]:
    async with live_pipeline(redis_cluster, tmp_path) as running:
        yield running


async def test_a_worker_and_a_sender_on_the_cluster_deliver_what_the_simulator_says(
    cluster_pipeline: Pipeline,
) -> None:
    pipeline = cluster_pipeline
    assert pipeline.env["REDIS_URL"] == REDIS_CLUSTER_URL
    demo = ROOT / "examples" / "demo-onboarding.yaml"
    async with provider(pipeline) as stub:
        await pipeline.deploy(demo)
        pipeline.start("worker")
        pipeline.start("sender")
        await asyncio.sleep(3)  # the sign-ups are a second before now: after the publication
        end = datetime.now(UTC)
        events = signups("cluster", 40, end)
        prediction = oracle(engine_of([demo.read_text()], None), events, end + timedelta(minutes=1))
        assert len(prediction.deliveries) >= 80
        await pipeline.publish(events)
        got = await settle(stub, len(prediction.deliveries), end + timedelta(seconds=120))
    title = f"on the Redis Cluster: {len(prediction.deliveries)} expected, {len(got)} received"
    assert got == prediction.deliveries, report(
        title, prediction.deliveries, got, set(), set(), prediction.sends
    )
