"""Redis keeps nothing on disk, so a Redis restart empties the send buffers and the due index.
The `timeline` collection in MongoDB is the durable log of every emitted send: when a worker finds
Redis's epoch key gone (a new, empty Redis), it puts back every recent send that has no delivery
outcome yet, and refills the due index from the user documents. Putting back too much is
harmless: the sender drops dispatch ids it has already delivered. The branch locks went with
Redis too, so the replay claims them again through the emitter's own path, oldest send first
(delivered ones included): a branch a lock refused before is refused again.

A Redis Cluster can lose one master's slots while the others keep theirs (a master restarts; no
replica took over), so it has one epoch key per master, each with a hash tag chosen to land in
that master's slots (from CLUSTER SLOTS), and the loss of any one runs the whole recovery: it
puts back more than the lost slots held, which is harmless, and needs no map of what lived where.
Slots that move to another master (resharding) can take an epoch key with them: the master left
without one gets a new one and runs a recovery it did not need, once.

The worker that wins the missing epoch keys holds them as a marker that expires while it
recovers, and sets the epoch only once the sends are put back and the due index refilled: a
recovery that fails (MongoDB restarting at that moment) or dies leaves the keys missing again,
and the next check, its own or another worker's, runs it again. Setting the epoch first lost the
recovery for good when it failed."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from app.keyspace import Keyspace
from app.redis_client import RedisClient
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
# How long a recovery in progress holds the missing epoch keys: one that died (its worker
# killed) is run again by another worker after this; one still running then is run twice, which
# puts back nothing twice that the sender would send twice.
RECOVERING_SECONDS = 120


class RedisRecovery:
    def __init__(
        self,
        client: RedisClient,
        prefix: str,
        branch_lock: BranchLock,
        buffer: SendBuffer,
        database: Database,
        due_index: DueIndex,
        store: UserStore,
    ) -> None:
        self._redis = client
        self._keys = Keyspace(prefix)
        self._lock = branch_lock
        self._buffer = buffer
        self._timeline = Timeline(database)
        self._deliveries = Deliveries(database)
        self._due_index = due_index
        self._store = store
        self.replayed = 0

    async def check(self, now: datetime) -> int:
        """Re-buffers recent undelivered sends if Redis (or one master of a cluster) lost its
        data; returns how many. The worker that finds an epoch key gone and sets a new one does
        it, once."""
        keys = await self._epoch_keys()
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            pipe.exists(key)
        missing = [key for key, found in zip(keys, await pipe.execute(), strict=True) if not found]
        if not missing:
            return 0
        marker = f"recovering:{uuid.uuid4().hex}"
        pipe = self._redis.pipeline(transaction=False)
        for key in missing:
            pipe.set(key, marker, nx=True, ex=RECOVERING_SECONDS)
        won = [key for key, set_ in zip(missing, await pipe.execute(), strict=True) if set_]
        if not won:
            return 0  # another worker noticed first and recovers
        log.warning(
            "Redis lost its data (%d of %d epoch keys gone): recovering", len(missing), len(keys)
        )
        try:
            replayed = await self._replay(now)
            refilled = await self._due_index.refill(self._store)
        except BaseException:
            await self._give_up(won)
            raise
        epoch = uuid.uuid4().hex
        pipe = self._redis.pipeline(transaction=False)
        for key in won:
            pipe.set(key, epoch)
        await pipe.execute()
        if refilled:
            log.warning("Redis was empty: put back %d users with timers", refilled)
        return replayed

    async def _give_up(self, keys: list[str]) -> None:
        """Leaves the epoch keys missing, so the next check recovers; if Redis cannot be told
        now, the marker expires (RECOVERING_SECONDS)."""
        try:
            pipe = self._redis.pipeline(transaction=False)
            for key in keys:
                pipe.delete(key)
            await pipe.execute()
        except Exception as error:
            log.warning("a failed Redis recovery runs again in %ds (%r)", RECOVERING_SECONDS, error)

    async def _epoch_keys(self) -> list[str]:
        """One key on a single Redis; one in the slots of each master of a cluster."""
        if not isinstance(self._redis, RedisCluster):
            return [self._keys.epoch()]
        ranges: dict[tuple[str, int], list[tuple[int, int]]] = {}
        for slots, node in (await self._redis.cluster_slots()).items():
            ranges.setdefault(tuple(node["primary"]), []).append(slots)
        return [self._keys.cluster_epoch(tag_in(owned)) for _, owned in sorted(ranges.items())]

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


def tag_in(ranges: list[tuple[int, int]]) -> str:
    """The first hash tag `epoch-N` whose slot lies in one of `ranges` (a master's slots)."""
    n = 0
    while not any(low <= key_slot(f"epoch-{n}".encode()) <= high for low, high in ranges):
        n += 1
    return f"epoch-{n}"
