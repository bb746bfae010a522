"""The documents of the users a worker saw last, so a micro-batch writes its users without reading
them first: a worker owns its users' partitions, so the document it wrote last is the stored one.

What makes that safe:
- The cache holds each document as BSON bytes, the bytes written or read: every load decodes its
  own StoredUser, which the engine and the processor are free to change.
- A batch takes its users out of the cache as it loads them, and they come back only once its
  commit went through: as written, as read (unchanged), or not at all (a conflict, or a write
  that kept the version). A batch that fails halfway leaves none of them cached.
- Every write of the processor's that changes the state bumps `version`, and each replace is a
  compare-and-set on the version it was computed from (told apart by its `write_id` when the
  bulk result is ambiguous): a document changed behind the worker's back (another worker after
  a rebalance it missed) is a conflict, dropped, re-read and recomputed, as before. A write that
  keeps the version (only the user's parked inputs changed) is not cached: its next batch reads
  it.
- The only other writer of user documents (the API, sender, scheduler, CLI and Redis recovery
  only read them), the timer pump's sweep (`UserStore.claim_due`), sets `lease_until` without
  bumping the version, and a cached replace writes the lease as the worker last saw it. Losing
  that lease is fine: it keeps the Redis-index pump from publishing the same due timer again
  within the lease, and a timer published twice is a no-op in the engine.
- Rebalances clear the cache (`clear`): a partition that comes back may have been written by
  another worker meanwhile. A batch in flight across a clear puts nothing back.

The bound is in bytes: each entry counts its document's size plus `ENTRY_OVERHEAD` (the bytes
object, its key and the map's slot), least recently used out first, so the cache's memory stays
flat however many users the worker sees. 0 bytes disables it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from app.store.users import StoredUser, UserCommit, UserStore

# Memory an entry takes beside its document and its id's characters, with room to spare (measured
# with tracemalloc: 33 bytes of the bytes object's header, 49 of the id's, about 66 of the map's).
ENTRY_OVERHEAD = 200


class UserCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0  # bytes counted, at most max_bytes
        self._documents: OrderedDict[str, bytes] = OrderedDict()
        self._taken: dict[str, bytes] = {}
        self._clears = 0
        self._clears_at_take = 0

    def __len__(self) -> int:
        return len(self._documents)

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._documents

    async def load_many(self, store: UserStore, user_ids: Iterable[str]) -> dict[str, StoredUser]:
        """Every requested user: the cached ones taken out of the cache, the others read in one
        query; users without a document come back new. `settle` puts them back."""
        ids = list(dict.fromkeys(user_ids))
        self._taken = {}
        self._clears_at_take = self._clears
        for user_id in ids:
            document = self._documents.pop(user_id, None)
            if document is not None:
                self.size -= _cost(user_id, document)
                self._taken[user_id] = document
        self._taken.update(await store.load_documents(u for u in ids if u not in self._taken))
        users = {user_id: StoredUser.new(user_id) for user_id in ids}
        users.update(
            (user_id, StoredUser.from_bson(document)) for user_id, document in self._taken.items()
        )
        return users

    def settle(self, commits: list[UserCommit], conflicts: set[str]) -> None:
        """After the commit of the users the last `load_many` took: each written user as
        written, the unchanged ones as they were; the conflicting ones are left out (re-read)."""
        taken, self._taken = self._taken, {}
        if self._clears != self._clears_at_take:
            return  # a rebalance came in the meantime
        committed = {commit.user.user_id for commit in commits}
        for user_id, document in taken.items():
            if user_id not in committed:
                self.put(user_id, document)
        for commit in commits:
            user = commit.user
            if user.user_id not in conflicts and user.state.version != commit.expected_version:
                self.put(user.user_id, commit.stored.raw)

    def put(self, user_id: str, document: bytes) -> None:
        """The user's document, now the most recently used; the least recently used ones make
        room. A document larger than the whole cache is not kept."""
        self.drop([user_id])
        cost = _cost(user_id, document)
        if cost > self.max_bytes:
            return
        self._documents[user_id] = document
        self.size += cost
        while self.size > self.max_bytes:
            old_id, old = self._documents.popitem(last=False)
            self.size -= _cost(old_id, old)

    def drop(self, user_ids: Iterable[str]) -> None:
        for user_id in user_ids:
            document = self._documents.pop(user_id, None)
            if document is not None:
                self.size -= _cost(user_id, document)

    def clear(self) -> None:
        """Forgets every user (on a rebalance), and what a batch in flight took."""
        self._documents.clear()
        self.size = 0
        self._clears += 1


def _cost(user_id: str, document: bytes) -> int:
    return len(document) + len(user_id) + ENTRY_OVERHEAD
