"""Backoff for transient failures: exponential with full jitter, so restarted workers don't retry
in lockstep. Shared by everything that talks to Kafka, MongoDB, Redis or a provider."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import redis.exceptions
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError
from pymongo.errors import AutoReconnect, ConnectionFailure, ExecutionTimeout, NetworkTimeout

T = TypeVar("T")
log = logging.getLogger(__name__)

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    AutoReconnect,
    ConnectionFailure,
    NetworkTimeout,
    ExecutionTimeout,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    # A Redis Cluster with a master down or slots moving, until it settles.
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.SlotNotCoveredError,
    KafkaConnectionError,
    KafkaTimeoutError,
    NodeNotReadyError,
    ConnectionError,
    TimeoutError,
)


@dataclass(frozen=True)
class Backoff:
    base: float = 0.1
    cap: float = 10.0
    factor: float = 2.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number `attempt` (0-based): uniform in [0, bounded exp]."""
        ceiling = min(self.cap, self.base * self.factor**attempt)
        return (rng or random).uniform(0, ceiling)


async def retry_transient(
    operation: Callable[[], Awaitable[T]],
    *,
    what: str,
    backoff: Backoff = Backoff(),
) -> T:
    """Runs `operation` until it succeeds, waiting between attempts that failed on a transient
    error. Anything else propagates at once: retrying a bug only hides it."""
    attempt = 0
    while True:
        try:
            return await operation()
        except TRANSIENT_ERRORS as exc:
            attempt += 1
            wait = backoff.delay(attempt)
            log.warning("%s failed (%r); retry %d in %.2fs", what, exc, attempt, wait)
            await asyncio.sleep(wait)
