"""The Redis client of every process (worker, sender, API), made in one place."""

from __future__ import annotations

import redis.asyncio as aioredis

from app.config import Settings


def new_redis(settings: Settings) -> aioredis.Redis:
    return aioredis.from_url(settings.redis_url)
