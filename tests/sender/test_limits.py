"""The per-channel token bucket shared through Redis, and the per-provider circuit breaker."""

from __future__ import annotations

import pytest

from app.config import SenderSettings
from app.sender.limits import CircuitBreaker, RateLimiter
from tests.conftest import BOTH_REDIS

pytestmark = BOTH_REDIS


async def test_token_bucket_is_shared_by_every_sender(redis_client, unique) -> None:
    rates = {"email": 5.0, "push": 5.0}
    first = RateLimiter(redis_client, unique, rates)
    second = RateLimiter(redis_client, unique, rates)
    waits = [await limiter.wait_time("email") for limiter in (first, second) * 4]
    assert waits[:5] == [0.0] * 5  # the burst of 5, taken by both instances together
    assert all(0 < wait <= 0.2 + 1e-6 for wait in waits[5:])
    assert await first.wait_time("push") == 0.0  # each channel has its own bucket


async def test_each_channel_fills_at_its_own_rate_across_senders(redis_client, unique) -> None:
    rates = SenderSettings(rate_per_second=20.0, sms_rate=2.0).channel_rates()
    first = RateLimiter(redis_client, unique, rates)
    second = RateLimiter(redis_client, unique, rates)
    sms = [await limiter.wait_time("sms") for limiter in (first, second) * 2]
    assert sms[:2] == [0.0, 0.0]  # a burst of one second at 2/s, taken by both instances
    assert all(0.25 < wait <= 0.5 + 1e-6 for wait in sms[2:])  # a token every 0.5 s
    email = [await limiter.wait_time("email") for limiter in (first, second) * 10]
    assert email == [0.0] * 20  # SENDER_RATE's burst of 20, the SMS bucket empty beside it
    later = [await first.wait_time("email") for _ in range(5)]
    assert 0 < max(later) <= 0.05 + 1e-6  # then a token every 0.05 s


def test_a_rate_of_zero_or_less_is_refused(redis_client) -> None:
    with pytest.raises(
        ValueError, match=r"the push rate is 0\.0: expected sends per second above 0"
    ):
        RateLimiter(redis_client, "unused", {"email": 1.0, "push": 0.0})


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
