"""Which stored outboxes have been emitted, so a user's next write can drop them.

An outbox is written with the user's state and emitted after the write; clearing it would cost a
second write, so the next write of that user clears it instead. This needs to know, at the next
load, that the stored outbox went out: a mark in Redis, one short key per user holding a digest of
the emitted outbox's effect ids, set after the emit. Kept in Redis rather than in the worker, the
marks cost the worker no memory per user and survive its restarts.

A mark only ever drops an outbox identical to the one emitted. A lost or expired mark means the
outbox is emitted once more with the user's next write, which is harmless: the send buffer is a
set, the timeline ignores known ids and the sender drops dispatch ids it has delivered.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from app.keyspace import Keyspace
from app.redis_client import RedisClient, RedisPipeline
from app.worker.emitter import effect_id

MARK_SECONDS = 7 * 24 * 3600


def outbox_digest(outbox: list[dict[str, Any]]) -> str:
    ids = sorted(effect_id(effect) for effect in outbox)
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:24]


class EmittedMarks:
    def __init__(self, client: RedisClient, prefix: str, ttl_seconds: int = MARK_SECONDS) -> None:
        self._redis = client
        self._keys = Keyspace(prefix)
        self._ttl = ttl_seconds

    def queue_marks(
        self, pipe: RedisPipeline, outboxes: Iterable[tuple[str, list[dict[str, Any]]]]
    ) -> None:
        """Queues the marks recording these (user id, outbox) pairs as emitted: on a pipeline
        that runs them only after the outboxes went out (see `Emitter.emit`)."""
        for user_id, outbox in outboxes:
            if outbox:
                pipe.set(self._keys.emitted_mark(user_id), outbox_digest(outbox), ex=self._ttl)

    async def emitted(self, outboxes: Mapping[str, list[dict[str, Any]]]) -> set[str]:
        """The users whose given outbox is the one they were marked for."""
        users = [user_id for user_id, outbox in outboxes.items() if outbox]
        if not users:
            return set()
        # GETs in a pipeline, not MGET: the keys live in different Redis Cluster slots.
        pipe = self._redis.pipeline(transaction=False)
        for user_id in users:
            pipe.get(self._keys.emitted_mark(user_id))
        marks = await pipe.execute()
        return {
            user_id
            for user_id, mark in zip(users, marks, strict=True)
            if mark is not None and mark.decode() == outbox_digest(outboxes[user_id])
        }
