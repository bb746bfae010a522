"""Emits a user's outbox after the state write: sends go through the branch lock into the Redis
send buffer and are recorded on the user's timeline; everything else goes to the `timeline` topic,
which the timeline projector writes to the same collection in large batches, off the state-write
path. Every step is idempotent, because an outbox may be emitted more than once (after a crash, or
while its clearing write is pending).

Redis sees two round trips per micro-batch at most: the branch claims (only for sends that claim a
decision), then one pipeline buffering the admitted sends with what the caller records alongside
(the due index) and, on one Redis, the emitted marks behind them. On a Redis Cluster the marks go
in a pipeline of their own once the rest succeeded (see `applies_in_order`)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

import orjson

from app.dispatch.record import DispatchStep, Recipient, buffer_entry
from app.engine.effects import utc_text
from app.redis_client import RedisPipeline, applies_in_order
from app.store.mongo import Database
from app.store.timeline import Timeline
from app.store.users import StoredUser
from app.worker.branch_lock import BranchClaim, BranchLock
from app.worker.metrics import WorkerMetrics
from app.worker.send_buffer import SendBuffer

log = logging.getLogger(__name__)

SEND = "send"
# A `timeline` record carries one user's effects of a micro-batch (one record to produce and to
# consume for several effects), at most this many: far below the record size limit.
TIMELINE_RECORD_ENTRIES = 100
# Queues commands on a pipeline (see `Emitter.emit`).
Queue = Callable[[RedisPipeline], None]
BufferEntry = tuple[DispatchStep, datetime, Recipient]


def _nothing(pipe: RedisPipeline) -> None:
    """Queues nothing."""


def effect_id(effect: dict[str, Any]) -> str:
    """A send's dispatch id; for other effects a digest of the record, stable across replays."""
    if effect.get("dispatch_id"):
        return str(effect["dispatch_id"])
    return hashlib.sha256(orjson.dumps(effect, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def branch_pairs(send: dict[str, Any]) -> list[tuple[str, str]]:
    """(lock name, branch id) for every decision a send record claims: its `branches`, as
    `[lock, id]` pairs (outbox) or `{lock, branch}` objects (timeline), or the single `branch`
    (or null) of records written before each decision had a lock of its own."""
    if "branches" not in send:
        return [tuple(send["branch"])] if send.get("branch") else []  # type: ignore[list-item]
    return [
        (pair["lock"], pair["branch"]) if isinstance(pair, dict) else (pair[0], pair[1])
        for pair in send["branches"] or []
    ]


def claims_of(send: dict[str, Any]) -> list[BranchClaim]:
    return [BranchClaim(send["user_id"], lock, branch_id) for lock, branch_id in branch_pairs(send)]


def timeline_entry(user_id: str, effect: dict[str, Any], now: datetime) -> dict[str, Any]:
    """An effect as the `timeline` keeps it. A send's branches become `{lock, branch}` objects:
    FerretDB stores no arrays nested in arrays."""
    entry = {"_id": effect_id(effect), "user_id": user_id, "recorded_at": now, **effect}
    if "branches" in effect:
        entry["branches"] = [{"lock": lock, "branch": b} for lock, b in branch_pairs(effect)]
    return entry


def timeline_records(
    user_id: str, effects: list[dict[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    """A user's effects as the `timeline` topic carries them (topics/timeline.json): the
    projector makes each the document `timeline_entry` would."""
    entries = [{"effect_id": effect_id(effect), "effect": effect} for effect in effects]
    size = TIMELINE_RECORD_ENTRIES
    return [
        {"user_id": user_id, "recorded_at": utc_text(now), "entries": entries[i : i + size]}
        for i in range(0, len(entries), size)
    ]


class TimelineOut(Protocol):
    """Where the emitter sends the effects that are not sends: it returns once they are durable
    (Kafka acknowledged them), as the outbox is marked emitted right after."""

    async def publish(self, records: list[dict[str, Any]]) -> None: ...


async def admit(
    lock: BranchLock, sends: list[dict[str, Any]], delivered: frozenset[str] = frozenset()
) -> tuple[list[BufferEntry], list[dict[str, Any]]]:
    """Claims every branch of every send, in order. Returns the buffer entries of the sends whose
    claims all hold, except those already `delivered` (their claims are still made, so their
    decisions stay taken), and the refused sends. The emitter and the Redis recovery both go
    through here: only one branch per decision is ever sent."""
    claims = [claims_of(send) for send in sends]
    held = iter(await lock.claim_many([claim for each in claims for claim in each]))
    admitted = [all([next(held) for _ in each]) for each in claims]
    refused = [send for send, ok in zip(sends, admitted, strict=True) if not ok]
    entries = [
        buffer_entry(send)
        for send, ok in zip(sends, admitted, strict=True)
        if ok and send["dispatch_id"] not in delivered
    ]
    return entries, refused


async def buffer_admitted(
    lock: BranchLock,
    buffer: SendBuffer,
    sends: list[dict[str, Any]],
    delivered: frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """Buffers the sends `admit` admits; returns the refused ones."""
    entries, refused = await admit(lock, sends, delivered)
    await buffer.add_many(entries)
    return refused


class Emitter:
    def __init__(
        self,
        branch_lock: BranchLock,
        send_buffer: SendBuffer,
        database: Database,
        metrics: WorkerMetrics,
        timeline_out: TimelineOut,
    ) -> None:
        self._lock = branch_lock
        self._buffer = send_buffer
        self._timeline = Timeline(database)
        self._timeline_out = timeline_out
        self._metrics = metrics

    async def emit(
        self,
        users: list[StoredUser],
        now: datetime,
        alongside: Queue = _nothing,
        after: Queue = _nothing,
    ) -> None:
        """Emits the users' outboxes. `alongside` queues commands to run with the sends'
        buffering (in any order with it); `after` queues commands that must take effect only
        once every outbox went out (the emitted marks): they run behind the buffering, after the
        timeline write."""
        sends = [e for user in users for e in user.outbox if e["kind"] == SEND]
        others = [
            record
            for user in users
            for record in timeline_records(
                user.user_id, [e for e in user.outbox if e["kind"] != SEND], now
            )
        ]
        # Independent and idempotent: a failure of any fails the batch, which is redone. Sends
        # are on the timeline when this returns (the Redis recovery and the callbacks find them
        # there); the rest is in Kafka, on its way to the timeline.
        (entries, refused), _, _ = await asyncio.gather(
            admit(self._lock, sends),
            self._timeline.record([timeline_entry(e["user_id"], e, now) for e in sends]),
            self._timeline_out.publish(others),
        )
        pipe = self._buffer.pipeline()
        self._buffer.queue_add(pipe, entries)
        alongside(pipe)
        in_order = applies_in_order(pipe)
        if in_order:
            after(pipe)
        await pipe.execute()
        self._count(sends, refused)
        if not in_order:
            pipe = self._buffer.pipeline()
            after(pipe)
            await pipe.execute()

    def _count(self, sends: list[dict[str, Any]], refused: list[dict[str, Any]]) -> None:
        for send in refused:
            log.error(
                "branch lock refused dispatch %s: another branch of one of its entry's decisions"
                " won",
                send["dispatch_id"],
            )
        self._metrics.branch_refused += len(refused)
        self._metrics.sends_buffered += len(sends) - len(refused)
