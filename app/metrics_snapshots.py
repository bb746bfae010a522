"""Each worker's and sender's counters, published to a Redis hash every few seconds as one
snapshot stamped with its publish time, and read back by the API's `/metrics`.

A snapshot not refreshed for `STALE_AFTER_SECONDS` is a process that died or hangs: the reader
leaves it out and removes it, so a killed process's series leave the totals promptly (Prometheus'
rate() copes with series that come and go; a sum kept across processes would drop instead)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from app.redis_client import RedisClient

PUBLISH_INTERVAL_SECONDS = 5.0
STALE_AFTER_SECONDS = 3 * PUBLISH_INTERVAL_SECONDS
# A hash nobody publishes to any more (every process gone) goes away by itself.
KEEP_SECONDS = 3600

Snapshot = dict[str, Any]


async def publish_snapshot(
    redis: RedisClient, key: str, process_id: str, snapshot: Mapping[str, object], now: float
) -> None:
    """`now` is wall-clock seconds since the epoch: the reader compares it with its own."""
    await redis.hset(key, process_id, orjson.dumps({**snapshot, "published_at": now}))
    await redis.expire(key, KEEP_SECONDS)


async def fresh_snapshots(redis: RedisClient, keys: list[str], now: float) -> dict[str, Snapshot]:
    """Process id -> its snapshot, from every hash in `keys`; stale ones are removed."""
    pipe = redis.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(key)
    fresh: dict[str, Snapshot] = {}
    stale: dict[str, list[bytes]] = {}
    for key, entries in zip(keys, await pipe.execute(), strict=True):
        for process_id, value in entries.items():
            snapshot = orjson.loads(value)
            if now - snapshot.get("published_at", 0.0) > STALE_AFTER_SECONDS:
                stale.setdefault(key, []).append(process_id)
            else:
                fresh[process_id.decode()] = snapshot
    for key, process_ids in stale.items():
        await redis.hdel(key, *process_ids)
    return fresh
