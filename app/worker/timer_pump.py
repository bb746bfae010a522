"""Durable timers: due times live in the user documents (set and cleared with the state, indexed
by next due time). Each worker pumps the partitions it owns: it claims due users with a lease and
publishes one record per due timer to `timers`, keyed by user id. A timer that fires twice is a
no-op in the engine; a pump that dies leaves a lease that expires, so timers fire late but fire."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import orjson
from aiokafka import AIOKafkaProducer

from app.dispatch.record import utc_text
from app.store.users import UserStore
from app.worker.metrics import WorkerMetrics


class TimerPump:
    def __init__(
        self,
        store: UserStore,
        producer: AIOKafkaProducer,
        timers_topic: str,
        metrics: WorkerMetrics,
        lease_seconds: float = 30.0,
        users_per_round: int = 1000,
    ) -> None:
        self._store = store
        self._producer = producer
        self._topic = timers_topic
        self._metrics = metrics
        self._lease = timedelta(seconds=lease_seconds)
        self._limit = users_per_round

    async def pump(self, partitions: Iterable[int], now: datetime) -> int:
        """Publishes the timers due by `now` on these partitions; returns how many."""
        owned = sorted(set(partitions))
        if not owned:
            return 0
        users = await self._store.claim_due(owned, now, now + self._lease, self._limit)
        futures = []
        for user in users:
            for timer in user.state.due_timers(now):
                record = {
                    "kind": "timer",
                    "user_id": user.user_id,
                    "timer_id": timer.timer_id,
                    "due_at": utc_text(timer.due_at),
                    "fired_at": utc_text(now),
                }
                futures.append(
                    await self._producer.send(
                        self._topic, orjson.dumps(record), key=user.user_id.encode()
                    )
                )
        for future in futures:
            await future
        self._metrics.timers_published += len(futures)
        return len(futures)
