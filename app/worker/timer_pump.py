"""Durable timers: due times live in the user documents (set and cleared with the state), and the
Redis due index says which users to look at. Each worker pumps the partitions it owns: it claims
the users the index shows due (a lease in Redis, no MongoDB write), checks them against MongoDB
and publishes one record per due timer to `timers`, keyed by user id, on the user's partition
(set explicitly: the one its events are repartitioned to). A timer that fires twice
is a no-op in the engine; a pump that dies leaves claims that expire, so timers fire late but
fire. A slow sweep of MongoDB by due time backs the index up."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import orjson
from aiokafka import AIOKafkaProducer

from app.engine.effects import utc_text
from app.store.users import PARKED_RETRY_TIMER, StoredUser, UserStore
from app.worker.due_index import DueIndex
from app.worker.metrics import WorkerMetrics
from app.worker.partitions import partition_of


class TimerPump:
    def __init__(
        self,
        store: UserStore,
        index: DueIndex,
        producer: AIOKafkaProducer,
        timers_topic: str,
        partitions: int,
        metrics: WorkerMetrics,
        lease_seconds: float = 30.0,
        users_per_round: int = 1000,
    ) -> None:
        self._store = store
        self._index = index
        self._producer = producer
        self._topic = timers_topic
        self._partitions = partitions
        self._metrics = metrics
        self._lease = timedelta(seconds=lease_seconds)
        self._limit = users_per_round

    async def pump(self, partitions: Iterable[int], now: datetime) -> int:
        """Publishes the timers the due index shows due by `now`; returns how many."""
        lease_until = now + self._lease
        entries = await self._index.claim(partitions, now, lease_until, self._limit)
        if not entries:
            return 0
        partition_of = dict(entries)
        users = await self._store.load_many(partition_of)
        due: list[StoredUser] = []
        corrections: list[tuple[str, int, datetime | None]] = []
        for user_id, user in users.items():
            due_at = user.loaded_next_due_at
            if due_at is None or due_at > now:
                corrections.append((user_id, partition_of[user_id], due_at))  # stale entry
            elif user.lease_until is not None and user.lease_until > now:
                # Claimed by the sweep: it publishes them.
                corrections.append((user_id, partition_of[user_id], user.lease_until))
            else:
                due.append(user)  # its entry stays claimed until the lease ends
        await self._index.correct(corrections, claimed_until=lease_until)
        return await self._publish(due, now)

    async def sweep(self, partitions: Iterable[int], now: datetime) -> int:
        """Publishes due timers found by scanning MongoDB, whatever the index says."""
        owned = sorted(set(partitions))
        if not owned:
            return 0
        users = await self._store.claim_due(owned, now, now + self._lease, self._limit)
        return await self._publish(users, now)

    async def _publish(self, users: list[StoredUser], now: datetime) -> int:
        futures = []
        for user in users:
            due = [(t.timer_id, t.due_at) for t in user.state.due_timers(now)]
            if user.parked.records:  # its timers wait behind its parked inputs
                retry_at = user.parked.retry_at
                due = [(PARKED_RETRY_TIMER, retry_at)] if retry_at and retry_at <= now else []
            for timer_id, due_at in due:
                record = {
                    "kind": "timer",
                    "user_id": user.user_id,
                    "timer_id": timer_id,
                    "due_at": utc_text(due_at),
                    "fired_at": utc_text(now),
                }
                futures.append(
                    await self._producer.send(
                        self._topic,
                        orjson.dumps(record),
                        key=user.user_id.encode(),
                        partition=partition_of(user.user_id, self._partitions),
                    )
                )
        for future in futures:
            await future
        self._metrics.timers_published += len(futures)
        return len(futures)
