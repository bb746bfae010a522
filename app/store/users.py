"""User state in MongoDB, one document per user: the engine's state plus what the worker needs to
survive a crash (outbox of effects not yet emitted, last applied offset per source partition) and
to find due timers (next due time, partition, claim lease).

The outbox is stored as one binary value (its records in JSON): the store never queries it, and
a document's cost to read and write grows with its number of values, which the outbox's records
would otherwise dominate. The engine's recent `sends` (as [channel, ISO 8601 time] pairs: orjson
writes and Python parses those faster than any number of milliseconds) and `applied` input ids
are packed the same way, for the same reason: nothing queries them either. Documents written
before they were packed still load.

Each batch commits every changed user with one conditional replace (compare-and-set on the state
version) in a single `bulk_write`; each write stores an id of its own (`write_id`), so a replace
that missed is told from one that landed even when another writer stored the same version.
FerretDB applies updates read-modify-write, so the CAS is a guard, not the guarantee: one consumer
per partition keeps a user's writer single, and dispatch ids make any replayed send harmless
downstream.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

import bson
import orjson
from bson import Binary
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import ASCENDING, InsertOne, ReplaceOne
from pymongo.errors import BulkWriteError

from app.engine import UserState
from app.store.mongo import Database, duplicate_writes
from app.store.time_zones import TimeZones

# Fields the worker keeps beside the engine's own; the engine never sees them.
OUTBOX = "outbox"
SOURCE_OFFSETS = "source_offsets"
NEXT_DUE_AT = "next_due_at"
PARTITION = "partition"
LEASE_UNTIL = "lease_until"
# Inputs that reached an entry of a journey version the worker did not have, kept in order with
# the user's later inputs until it has it: {records, attempts, retry_at}.
PARKED = "parked"
WRITE_ID = "write_id"
WORKER_FIELDS = (OUTBOX, SOURCE_OFFSETS, NEXT_DUE_AT, PARTITION, LEASE_UNTIL, PARKED, WRITE_ID)
# Fields of the engine's state stored as one binary value each (see the module docstring).
SENDS = "sends"
APPLIED = "applied"
# Documents as the clients read them (both are created tz-aware): for documents kept as BSON.
READ_OPTIONS = CodecOptions(tz_aware=True)
RAW_OPTIONS = CodecOptions(document_class=RawBSONDocument)
# The timer id of the record the timer pump publishes when a user's parked inputs are due for
# another try: no engine timer has it, so the engine ignores it.
PARKED_RETRY_TIMER = "~parked"


@dataclass
class Parked:
    """A user's parked inputs, as their original records, oldest first; tried again at
    `retry_at` (or with the user's next input), `attempts` tries so far."""

    records: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    retry_at: datetime | None = None

    def to_document(self) -> dict[str, Any] | None:
        if not self.records:
            return None
        return {
            "records": [
                {**record, "key": _binary(record["key"]), "value": _binary(record["value"])}
                for record in self.records
            ],
            "attempts": self.attempts,
            "retry_at": self.retry_at,
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any] | None) -> Parked:
        if not document:
            return cls()
        records = [
            {**record, "key": _bytes(record["key"]), "value": _bytes(record["value"])}
            for record in document["records"]
        ]
        return cls(records, int(document["attempts"]), document.get("retry_at"))


def _binary(value: bytes | None) -> Binary | None:
    return Binary(value) if value is not None else None


def _bytes(value: bytes | None) -> bytes | None:
    return bytes(value) if value is not None else None


@dataclass
class StoredUser:
    """A user as loaded: `version` is the stored state version, 0 when there is no document."""

    user_id: str
    state: UserState
    version: int = 0
    outbox: list[dict[str, Any]] = field(default_factory=list)
    source_offsets: dict[str, dict[str, int]] = field(default_factory=dict)
    lease_until: datetime | None = None
    loaded_next_due_at: datetime | None = None
    parked: Parked = field(default_factory=Parked)

    @classmethod
    def new(cls, user_id: str) -> StoredUser:
        return cls(user_id=user_id, state=UserState.new(user_id))

    @classmethod
    def from_bson(cls, document: bytes) -> StoredUser:
        """A user from its document as BSON bytes (as `UserStore.load_documents` reads it)."""
        return cls.from_document(bson.decode(document, codec_options=READ_OPTIONS))

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> StoredUser:
        packed = {k: document[k] for k in (SENDS, APPLIED) if isinstance(document.get(k), bytes)}
        engine_part = {
            k: v for k, v in document.items() if k not in WORKER_FIELDS and k not in packed
        }
        user_id = str(engine_part.pop("_id"))
        state = UserState.from_document(engine_part)
        if SENDS in packed:
            state.sends = [
                {"channel": channel, "at": datetime.fromisoformat(at)}
                for channel, at in orjson.loads(packed[SENDS])
            ]
        if APPLIED in packed:
            state.applied = list(orjson.loads(packed[APPLIED]))
        return cls(
            user_id=user_id,
            state=state,
            version=state.version,
            outbox=_outbox_of(document.get(OUTBOX)),
            source_offsets={
                topic: {str(p): int(o) for p, o in offsets.items()}
                for topic, offsets in (document.get(SOURCE_OFFSETS) or {}).items()
            },
            lease_until=document.get(LEASE_UNTIL),
            loaded_next_due_at=document.get(NEXT_DUE_AT),
            parked=Parked.from_document(document.get(PARKED)),
        )

    def next_due_at(self) -> datetime | None:
        """The next time the user needs the worker: the next try of its parked inputs while it
        has some (its timers wait behind them), else its next timer."""
        return self.parked.retry_at if self.parked.records else self.state.next_due_at()

    def applied(self, source: str, partition: int, offset: int) -> bool:
        """True when this input's offset is at or below the last one applied from its partition."""
        last = self.source_offsets.get(source, {}).get(str(partition))
        return last is not None and offset <= last

    def record_offset(self, source: str, partition: int, offset: int) -> None:
        offsets = self.source_offsets.setdefault(source, {})
        offsets[str(partition)] = max(offset, offsets.get(str(partition), -1))


def _outbox_of(stored: bytes | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The outbox as stored: JSON bytes, or a list in documents written before it was packed."""
    if isinstance(stored, bytes):
        return list(orjson.loads(stored))
    return list(stored or [])


@dataclass(frozen=True)
class UserCommit:
    """The finalized state of one user after a batch, and the version it was computed from."""

    user: StoredUser
    expected_version: int
    partition: int
    write_id: int = field(default_factory=lambda: random.getrandbits(63))

    def document(self) -> dict[str, Any]:
        state = self.user.state
        document = dict(state.to_document())
        document["_id"] = self.user.user_id
        sends = [(send["channel"], send["at"]) for send in state.sends]
        document[SENDS] = Binary(orjson.dumps(sends, option=orjson.OPT_UTC_Z))
        document[APPLIED] = Binary(orjson.dumps(state.applied))
        next_due = self.user.next_due_at()
        document[PARKED] = self.user.parked.to_document()
        document[OUTBOX] = Binary(orjson.dumps(self.user.outbox))
        document[SOURCE_OFFSETS] = self.user.source_offsets
        document[NEXT_DUE_AT] = next_due
        document[PARTITION] = self.partition
        document[WRITE_ID] = self.write_id
        # A timer claim covers the next due time it was taken for; once that moved (the timer
        # fired, or another was scheduled sooner) the new one must be claimable at once.
        unchanged = next_due is not None and next_due == self.user.loaded_next_due_at
        document[LEASE_UNTIL] = self.user.lease_until if unchanged else None
        return document

    @cached_property
    def stored(self) -> RawBSONDocument:
        """The document as BSON, encoded once: the write sends these bytes, and the worker's
        user cache keeps them as written."""
        return RawBSONDocument(bson.encode(self.document()))


class UserStore:
    def __init__(self, database: Database, bulk_ops: int, collection: str = "users") -> None:
        self.collection = database[collection]
        self._raw = self.collection.with_options(codec_options=RAW_OPTIONS)
        self.zones = TimeZones(database)
        self.bulk_ops = bulk_ops
        self.writes = 0

    async def load_many(self, user_ids: Iterable[str]) -> dict[str, StoredUser]:
        """Every requested user in one query; users without a document come back new."""
        ids = list(dict.fromkeys(user_ids))
        users = {user_id: StoredUser.new(user_id) for user_id in ids}
        async for document in self.collection.find({"_id": {"$in": ids}}):
            user = StoredUser.from_document(document)
            users[user.user_id] = user
        return users

    async def load_documents(self, user_ids: Iterable[str]) -> dict[str, bytes]:
        """The stored documents of these users as BSON, in one query (none for no user): the
        worker's user cache keeps them as read. Users without a document are left out."""
        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return {}
        return {
            str(document["_id"]): document.raw
            async for document in self._raw.find({"_id": {"$in": ids}})
        }

    async def subscription_states(
        self, user_ids: list[str]
    ) -> dict[str, tuple[dict[str, bool], dict[str, bool]]]:
        """Each stored user's channel and topic subscriptions, in one query that reads nothing
        else (the sender's check right before a delivery)."""
        cursor = self.collection.find(
            {"_id": {"$in": list(dict.fromkeys(user_ids))}}, {"subscriptions": 1, "topics": 1}
        )
        return {
            document["_id"]: (
                dict(document.get("subscriptions") or {}),
                dict(document.get("topics") or {}),
            )
            async for document in cursor
        }

    async def commit_many(self, commits: list[UserCommit]) -> set[str]:
        """One conditional write per user; returns the users whose stored version had moved on
        (another writer got there first), who must be reloaded and recomputed. The writes go in
        bulk commands of at most `bulk_ops`, several in flight at once. A time zone no user
        written by this process had before is recorded first (the scheduler reads them)."""
        await self.zones.record(commit.user.state.timezone for commit in commits)
        chunks = [
            commits[first : first + self.bulk_ops]
            for first in range(0, len(commits), self.bulk_ops)
        ]
        results = await asyncio.gather(*(self._commit_chunk(chunk) for chunk in chunks))
        return set().union(*results)

    async def _commit_chunk(self, commits: list[UserCommit]) -> set[str]:
        if not commits:
            return set()
        operations: list[InsertOne | ReplaceOne] = []
        for commit in commits:
            document = commit.stored
            if commit.expected_version == 0:
                operations.append(InsertOne(document))
            else:
                condition = {"_id": commit.user.user_id, "version": commit.expected_version}
                operations.append(ReplaceOne(condition, document))
        conflicts: set[str] = set()
        replaced_expected = sum(1 for c in commits if c.expected_version != 0)
        try:
            result = await self.collection.bulk_write(operations, ordered=False)
            matched = result.matched_count
        except BulkWriteError as error:
            conflicts = {commits[index].user.user_id for index in duplicate_writes(error)}
            matched = error.details.get("nMatched", 0)
        self.writes += len(commits) - len(conflicts)
        if matched < replaced_expected:
            conflicts |= await self._stale_replacements(commits)
            self.writes -= replaced_expected - matched
        return conflicts

    async def _stale_replacements(self, commits: list[UserCommit]) -> set[str]:
        """A bulk result counts matches but does not say which replace missed: ask the store
        whose write each document holds (the version is not enough: another writer may have
        computed the same one from the same base)."""
        wanted = {c.user.user_id: c.write_id for c in commits if c.expected_version}
        stored = {
            document["_id"]: document.get(WRITE_ID)
            async for document in self.collection.find(
                {"_id": {"$in": list(wanted)}}, {WRITE_ID: 1}
            )
        }
        return {user_id for user_id, write in wanted.items() if stored.get(user_id) != write}

    async def claim_due(
        self, partitions: Iterable[int], now: datetime, lease_until: datetime, limit: int
    ) -> list[StoredUser]:
        """Users of these partitions with a timer due, not claimed by a live lease; claims them.
        A scan by due time: the timer pump's slow sweep, behind the Redis due index."""
        query = {
            PARTITION: {"$in": list(partitions)},
            NEXT_DUE_AT: {"$lte": now},
            "$or": [{LEASE_UNTIL: None}, {LEASE_UNTIL: {"$lte": now}}],
        }
        documents = await self.collection.find(query).sort(NEXT_DUE_AT, ASCENDING).to_list(limit)
        users = [StoredUser.from_document(document) for document in documents]
        await self.lease(users, now, lease_until)
        return users

    async def lease(self, users: list[StoredUser], now: datetime, lease_until: datetime) -> None:
        """Claims these users' due timers until `lease_until`, unless a live lease holds them.
        The one write to user documents besides the worker's commits, and it keeps the version:
        a worker whose user cache holds the user replaces the document with the lease it last
        saw. That is fine: the lease only keeps the pump from publishing the same due timer
        again within it, and a timer that fires twice is a no-op in the engine."""
        if not users:
            return
        await self.collection.update_many(
            {
                "_id": {"$in": [user.user_id for user in users]},
                "$or": [{LEASE_UNTIL: None}, {LEASE_UNTIL: {"$lte": now}}],
            },
            {"$set": {LEASE_UNTIL: lease_until}},
        )

    async def users_with_timers(self) -> AsyncIterator[tuple[str, int, datetime]]:
        """(user id, partition, next due time) of every user with a pending timer."""
        cursor = self.collection.find({NEXT_DUE_AT: {"$ne": None}}, {NEXT_DUE_AT: 1, PARTITION: 1})
        async for document in cursor:
            yield document["_id"], document[PARTITION], document[NEXT_DUE_AT]

    async def user_ids_matching(
        self, audience: Mapping[str, Any], after: str | None, limit: int
    ) -> list[str]:
        """One page of user ids matching an audience filter, in id order, for resumable scans."""
        query: dict[str, Any] = dict(audience)
        if after is not None:
            query = {"$and": [query, {"_id": {"$gt": after}}]} if query else {"_id": {"$gt": after}}
        cursor = self.collection.find(query, {"_id": 1}).sort("_id", ASCENDING).limit(limit)
        return [document["_id"] async for document in cursor]

    async def count_matching(self, query: Mapping[str, Any]) -> int:
        """How many stored users a filter selects (a decision tree leaf's audience)."""
        return int(await self.collection.count_documents(dict(query)))

    async def time_zones(self) -> list[str]:
        """Every time zone users live in, and UTC (where users without one live), as recorded
        when they were written; the users stored before zones were recorded are read once."""
        if not await self.zones.backfilled():
            await self.zones.record(await self.collection.distinct("timezone"))
            await self.zones.mark_backfilled()
        return await self.zones.all()
