"""Fixtures on the real servers. The URLs come from the environment (defaults: the local servers);
the session starts the local ones with scripts/services when they are not running, never skips."""

from __future__ import annotations

import dataclasses
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorDatabase

from app.config import Settings
from app.redis_client import RedisClient, open_redis
from app.store.mongo import close_client, new_client
from tests.pipeline import Pipeline, live_pipeline

ROOT = Path(__file__).resolve().parents[1]
# The three-master cluster `scripts/services up redis-cluster` starts.
REDIS_CLUSTER_URL = "redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003/"
# For a module whose Redis tests also run against the cluster: `pytestmark = BOTH_REDIS`.
BOTH_REDIS = pytest.mark.both_redis


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "both_redis: Redis tests run on a single Redis and a cluster"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked `both_redis` that uses Redis runs once on each."""
    if (
        metafunc.definition.get_closest_marker("both_redis")
        and "redis_kind" in metafunc.fixturenames
    ):
        metafunc.parametrize("redis_kind", ["redis", "redis-cluster"], indirect=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The fault tests restart the shared servers: they run last, so no other test runs against
    a broker still electing partition leaders after a restart."""
    items.sort(key=lambda item: "tests/faults/" in item.nodeid)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def servers(settings: Settings) -> Settings:
    """Starts whatever local server is not up yet (idempotent; external URLs are left alone)."""
    subprocess.run([str(ROOT / "scripts" / "services"), "up"], check=True)
    return settings


@pytest.fixture(scope="session")
async def mongo_client(servers: Settings) -> AsyncIterator[AsyncIOMotorClient]:
    client: AsyncIOMotorClient = AsyncIOMotorClient(servers.mongo_url, tz_aware=True)
    yield client
    client.close()


@pytest.fixture
async def mongo_db(mongo_client: AsyncIOMotorClient) -> AsyncIterator[AsyncIOMotorDatabase]:
    """A database of its own for each test, dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    yield mongo_client[name]
    await mongo_client.drop_database(name)


@pytest.fixture(params=["motor", "pymongo"])
async def store_db(request: pytest.FixtureRequest, servers: Settings) -> AsyncIterator[Any]:
    """A database of its own through each supported driver: the store must work with both."""
    settings = dataclasses.replace(servers, mongo_driver=request.param)
    client = new_client(settings)
    name = f"test_{uuid.uuid4().hex[:12]}"
    yield client[name]
    await client.drop_database(name)
    await close_client(client)


@pytest.fixture(scope="session")
def redis_cluster(servers: Settings) -> Settings:
    """The settings with `REDIS_URL` naming the local Redis Cluster, started if it is not up."""
    subprocess.run([str(ROOT / "scripts" / "services"), "up", "redis-cluster"], check=True)
    return dataclasses.replace(servers, redis_url=REDIS_CLUSTER_URL)


@pytest.fixture
def redis_kind(request: pytest.FixtureRequest) -> str:
    """Which Redis `redis_client` talks to: the single one, unless a module asks for both."""
    return getattr(request, "param", "redis")


@pytest.fixture
def redis_settings(request: pytest.FixtureRequest, redis_kind: str, servers: Settings) -> Settings:
    return request.getfixturevalue("redis_cluster") if redis_kind == "redis-cluster" else servers


@pytest.fixture
async def redis_client(redis_settings: Settings) -> AsyncIterator[RedisClient]:
    client = await open_redis(redis_settings)
    yield client
    await client.aclose()


@pytest.fixture
def unique() -> str:
    """A prefix that keeps one test's topics, keys and groups apart from every other's."""
    return f"t{uuid.uuid4().hex[:10]}-"


@pytest.fixture
async def new_topic(
    servers: Settings,
) -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """Creates topics with unique names; deletes them afterwards."""
    admin = AIOKafkaAdminClient(bootstrap_servers=servers.kafka_bootstrap)
    await admin.start()
    created: list[str] = []

    async def create(name: str, partitions: int = 1) -> str:
        topic = f"test-{uuid.uuid4().hex[:10]}-{name}"
        await admin.create_topics([NewTopic(topic, partitions, 1)])
        created.append(topic)
        return topic

    yield create
    if created:
        await admin.delete_topics(created)
    await admin.close()


@pytest.fixture
async def pipeline(redis_settings: Settings, tmp_path: Path) -> AsyncIterator[Pipeline]:
    """A live pipeline of its own (see tests/pipeline.py), on the single Redis unless its module
    asks for both."""
    async with live_pipeline(redis_settings, tmp_path) as running:
        yield running
