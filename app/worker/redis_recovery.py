"""Redis keeps nothing on disk, so a Redis restart empties the send buffers and the due index.
The `timeline` collection in MongoDB is the durable log of every emitted send: when a worker finds
Redis's epoch key gone (a new, empty Redis), it puts back every recent send that has no delivery
outcome yet, and refills the due index from the user documents. Putting back too much is
harmless: the sender drops dispatch ids it has already delivered. The branch locks went with
Redis too, so the replay claims them again through the emitter's own path, oldest send first
(delivered ones included): a branch a lock refused before is refused again."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

import redis.asyncio as aioredis

from app.keyspace import Keyspace
from app.store.deliveries import Deliveries
from app.store.mongo import Database
from app.store.timeline import Timeline
from app.store.users import UserStore
from app.worker.branch_lock import BranchLock
from app.worker.due_index import DueIndex
from app.worker.emitter import buffer_admitted
from app.worker.send_buffer import SendBuffer

log = logging.getLogger(__name__)

# Sends are buffered for seconds (they are due when emitted); this covers a long outage.
REPLAY_WINDOW = timedelta(hours=1)


class RedisRecovery:
    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        branch_lock: BranchLock,
        buffer: SendBuffer,
        database: Database,
        due_index: DueIndex,
        store: UserStore,
    ) -> None:
        self._redis = client
        self._key = Keyspace(prefix).epoch()
        self._lock = branch_lock
        self._buffer = buffer
        self._timeline = Timeline(database)
        self._deliveries = Deliveries(database)
        self._due_index = due_index
        self._store = store
        self.replayed = 0

    async def check(self, now: datetime) -> int:
        """Re-buffers recent undelivered sends if Redis lost its data; returns how many. The
        worker that finds the epoch key gone and sets a new one does it, once."""
        if await self._redis.exists(self._key):
            return 0
        if not await self._redis.set(self._key, uuid.uuid4().hex, nx=True):
            return 0  # another worker noticed first and replays
        replayed = await self._replay(now)
        refilled = await self._due_index.refill(self._store)
        if refilled:
            log.warning("Redis was empty: put back %d users with timers", refilled)
        return replayed

    async def _replay(self, now: datetime) -> int:
        sends = await self._timeline.sends_since(now - REPLAY_WINDOW)
        if not sends:
            return 0
        delivered = await self._deliveries.outcomes([s["dispatch_id"] for s in sends])
        refused = await buffer_admitted(self._lock, self._buffer, sends, frozenset(delivered))
        lost = {s["dispatch_id"] for s in refused} | set(delivered)
        pending = [s for s in sends if s["dispatch_id"] not in lost]
        if pending:
            log.warning("Redis was empty: put back %d undelivered sends", len(pending))
        self.replayed += len(pending)
        return len(pending)
