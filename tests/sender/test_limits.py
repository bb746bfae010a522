"""The per-channel token bucket shared through Redis, and the per-provider circuit breaker."""

from __future__ import annotations

from app.sender.limits import CircuitBreaker, RateLimiter


async def test_token_bucket_is_shared_by_every_sender(redis_client, unique) -> None:
    first = RateLimiter(redis_client, unique, per_second=5)
    second = RateLimiter(redis_client, unique, per_second=5)
    waits = [await limiter.wait_time("email") for limiter in (first, second) * 4]
    assert waits[:5] == [0.0] * 5  # the burst of 5, taken by both instances together
    assert all(0 < wait <= 0.2 + 1e-6 for wait in waits[5:])
    assert await first.wait_time("push") == 0.0  # each channel has its own bucket


def test_breaker_opens_after_failures_and_half_opens_after_cooldown() -> None:
    breaker = CircuitBreaker(failures=3, cooldown=10)
    for now in (0.0, 1.0):
        breaker.failed(now)
    assert breaker.allows(2.0)
    breaker.failed(2.0)
    assert not breaker.allows(5.0) and breaker.wait_time(5.0) == 7.0
    assert breaker.allows(12.0)  # one trial request
    breaker.failed(12.0)
    assert not breaker.allows(13.0)  # the trial failed: open again
    breaker.succeeded()
    assert breaker.allows(13.0) and breaker.wait_time(13.0) == 0.0
