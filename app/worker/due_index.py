"""Which users have a timer due, in Redis: one sorted set per partition, user ids scored by their
next due time. The user documents in MongoDB stay the truth; this index only saves the timer pump
from scanning them (FerretDB cannot use an index on `next_due_at`).

The pump claims due entries in Redis itself: one script per partition re-scores the entries due
by now to the end of a lease, so two pumps never take the same entry, and one that dies leaves
entries that come due again when the lease ends. A claim costs no MongoDB write.

It is kept right from both sides. The worker records every user of a batch after the batch's
write, changed or not, so a crash between the write and the record is repaired when the input is
redelivered. The pump repairs what it finds stale. A new, empty Redis is refilled from MongoDB by
the worker that notices, with ZADD LT so a refill never postpones a fresher entry. And a slow sweep
of MongoDB by due time catches anything else, late but never lost."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from app.keyspace import Keyspace
from app.redis_client import RedisClient, RedisPipeline
from app.store.users import UserStore

# Takes up to ARGV[3] entries due by ARGV[1], re-scored to the lease end ARGV[2].
CLAIM = """
local due = redis.call('zrangebyscore', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, member in ipairs(due) do redis.call('zadd', KEYS[1], ARGV[2], member) end
return due
"""
# Only an entry still as the claim left it is corrected: one re-scored by a worker since then is
# fresher than what the pump read.
CORRECT = """
local score = redis.call('zscore', KEYS[1], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return 0 end
if ARGV[3] == '' then return redis.call('zrem', KEYS[1], ARGV[1]) end
return redis.call('zadd', KEYS[1], ARGV[3], ARGV[1])
"""


class DueIndex:
    def __init__(self, client: RedisClient, prefix: str) -> None:
        self._redis = client
        self._keys = Keyspace(prefix)

    async def record(self, entries: Iterable[tuple[str, int, datetime | None]]) -> None:
        """(user id, partition, next due time or None when the user has no timer)."""
        pipe = self._redis.pipeline(transaction=False)
        self.queue_record(pipe, entries)
        await pipe.execute()

    def queue_record(
        self, pipe: RedisPipeline, entries: Iterable[tuple[str, int, datetime | None]]
    ) -> None:
        """Queues `record`'s commands: one ZADD and one ZREM per partition at most (a user's
        last entry counts)."""
        latest = {(partition, user_id): due_at for user_id, partition, due_at in entries}
        due: dict[int, dict[str, float]] = {}
        gone: dict[int, list[str]] = {}
        for (partition, user_id), due_at in latest.items():
            if due_at is None:
                gone.setdefault(partition, []).append(user_id)
            else:
                due.setdefault(partition, {})[user_id] = due_at.timestamp()
        for partition, scores in due.items():
            pipe.zadd(self._keys.due_index(partition), scores)
        for partition, users in gone.items():
            pipe.zrem(self._keys.due_index(partition), *users)

    async def claim(
        self, partitions: Iterable[int], now: datetime, until: datetime, limit: int
    ) -> list[tuple[str, int]]:
        """Up to `limit` (user id, partition) due by `now`, earliest first in each partition,
        claimed until `until`: no other claim takes them before then."""
        owned = sorted(set(partitions))
        if not owned:
            return []
        pipe = self._redis.pipeline(transaction=False)
        each = max(1, limit // len(owned))
        for partition in owned:
            # EVAL, not a registered script: a cluster pipeline refuses EVALSHA.
            pipe.eval(
                CLAIM, 1, self._keys.due_index(partition), now.timestamp(), until.timestamp(), each
            )
        return [
            (member.decode(), partition)
            for partition, members in zip(owned, await pipe.execute(), strict=True)
            for member in members
        ]

    async def correct(
        self, entries: Iterable[tuple[str, int, datetime | None]], claimed_until: datetime
    ) -> None:
        """Re-scores (or removes, for None) entries claimed until `claimed_until`, unless a worker
        recorded a fresher entry since the claim."""
        pipe = self._redis.pipeline(transaction=False)
        for user_id, partition, due_at in entries:
            score = "" if due_at is None else due_at.timestamp()
            key = self._keys.due_index(partition)
            pipe.eval(CORRECT, 1, key, user_id, claimed_until.timestamp(), score)
        await pipe.execute()

    async def refill(self, store: UserStore, chunk: int = 1_000) -> int:
        """Puts every stored user with a timer back; returns how many."""
        count = 0
        pipe = self._redis.pipeline(transaction=False)
        async for user_id, partition, due_at in store.users_with_timers():
            pipe.zadd(self._keys.due_index(partition), {user_id: due_at.timestamp()}, lt=True)
            count += 1
            if count % chunk == 0:
                await pipe.execute()
        await pipe.execute()
        return count
