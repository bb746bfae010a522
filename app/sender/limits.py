"""Keeping providers healthy: a token bucket per channel shared by every sender instance (one Lua
script in Redis), and a circuit breaker per provider that stops hammering one that is down."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from app.keyspace import Keyspace
from app.redis_client import RedisClient

# KEYS[1] bucket; ARGV rate/s, burst, now (s). Returns seconds to wait (0: a token was taken).
TAKE_TOKEN = """
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('hmget', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]) or burst, tonumber(state[2]) or now
tokens = math.min(burst, tokens + (now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('hset', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('expire', KEYS[1], 3600)
return tostring(wait)
"""


class RateLimiter:
    """Each channel's bucket fills at that channel's rate (sends per second) and holds up to one
    second of it (at least one token)."""

    def __init__(self, client: RedisClient, prefix: str, rates: Mapping[str, float]) -> None:
        for channel, rate in rates.items():
            if rate <= 0:
                raise ValueError(f"the {channel} rate is {rate}: expected sends per second above 0")
        self._script = client.register_script(TAKE_TOKEN)
        self._keys = Keyspace(prefix)
        self._rates = dict(rates)

    async def wait_time(self, channel: str) -> float:
        """Takes a token if one is free (0.0), else says how long until one is."""
        rate = self._rates[channel]
        wait = await self._script(
            keys=[self._keys.rate_limiter(channel)], args=[rate, max(1.0, rate), time.time()]
        )
        return float(wait)


@dataclass
class CircuitBreaker:
    """Open after `failures` transient failures in a row; after `cooldown` seconds one trial
    request goes through (half-open) and its outcome closes or re-opens the circuit."""

    failures: int
    cooldown: float
    _count: int = 0
    _opened_at: float | None = None

    def allows(self, now: float) -> bool:
        return self._opened_at is None or now - self._opened_at >= self.cooldown

    def succeeded(self) -> None:
        self._count, self._opened_at = 0, None

    def failed(self, now: float) -> None:
        self._count += 1
        if self._count >= self.failures:
            self._opened_at = now

    def wait_time(self, now: float) -> float:
        return 0.0 if self._opened_at is None else max(0.0, self.cooldown - (now - self._opened_at))
