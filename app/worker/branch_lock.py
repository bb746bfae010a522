"""Redis as lock, after the write-up: a key per decision (paths or split step) of a user's entry
in a journey, whose value is the branch that won. `SET NX` admits the first branch; the same
branch may retry, every other is refused for good. The key is hash-tagged by user id so Redis
Cluster keeps a user's keys on one slot. The engine's state also records the winners and stays
the source of truth if Redis loses the key."""

from __future__ import annotations

from dataclasses import dataclass

from app.keyspace import Keyspace
from app.redis_client import RedisClient


@dataclass(frozen=True)
class BranchClaim:
    user_id: str
    lock_name: str  # "<journey_id>:<user_id>:<entry_id>:<decision step id>"
    branch_id: str


class BranchLock:
    def __init__(self, client: RedisClient, prefix: str, ttl_seconds: int) -> None:
        self._redis = client
        self._keys = Keyspace(prefix)
        self._ttl = ttl_seconds

    def key(self, claim: BranchClaim) -> str:
        return self._keys.branch_lock(claim.user_id, claim.lock_name)

    async def claim_many(self, claims: list[BranchClaim]) -> list[bool]:
        """For each claim, whether its branch holds the lock (newly or from an earlier retry)."""
        if not claims:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for claim in claims:
            pipe.set(self.key(claim), claim.branch_id, nx=True, ex=self._ttl)
        acquired = await pipe.execute()
        refused = [claim for claim, ok in zip(claims, acquired, strict=True) if not ok]
        holders: dict[str, bytes | None] = {}
        if refused:
            pipe = self._redis.pipeline(transaction=False)
            for claim in refused:
                pipe.get(self.key(claim))
            holders = dict(zip(map(self.key, refused), await pipe.execute(), strict=True))
        return [
            bool(ok) or holders.get(self.key(claim)) == claim.branch_id.encode()
            for claim, ok in zip(claims, acquired, strict=True)
        ]
