"""The benchmark's own setup code against the real servers, at a size of a few users: CI does not
run `scripts/bench`, and a setup step that no longer fits the code it builds on must fail here,
not at the start of a long run."""

from __future__ import annotations

import dataclasses
import uuid

from app.config import Settings
from app.keyspace import Keyspace
from app.redis_client import new_redis
from app.store.mongo import close_client, new_client
from app.topics import load_contract
from benchmarks.run import park_users, typical_user_document


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
