"""Redis as lock: the first branch of an entry wins, may retry, and every other is refused."""

from __future__ import annotations

from app.worker.branch_lock import BranchClaim, BranchLock
from tests.conftest import BOTH_REDIS

pytestmark = BOTH_REDIS


async def test_first_branch_wins_retries_pass_others_are_refused(redis_client, unique) -> None:
    lock = BranchLock(redis_client, prefix=unique, ttl_seconds=60)
    a = BranchClaim("u-1", "journey:u-1:entry-1", "path-a")
    b = BranchClaim("u-1", "journey:u-1:entry-1", "path-b")
    other_entry = BranchClaim("u-1", "journey:u-1:entry-2", "path-b")
    other_user = BranchClaim("u-2", "journey:u-2:entry-1", "path-b")

    assert await lock.claim_many([a]) == [True]
    assert await lock.claim_many([b, a, other_entry, other_user]) == [False, True, True, True]
    assert await lock.claim_many([b]) == [False]
    assert await redis_client.get(lock.key(a)) == b"path-a"
    assert 0 < await redis_client.ttl(lock.key(a)) <= 60


async def test_lock_keys_are_hash_tagged_by_user(redis_client, unique) -> None:
    lock = BranchLock(redis_client, prefix=unique, ttl_seconds=60)
    key = lock.key(BranchClaim("u-42", "j:u-42:e", "p"))
    assert key == f"{unique}:branch:{{u-42}}:j:u-42:e"
