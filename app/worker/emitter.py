"""Emits a user's outbox after the state write: sends go through the branch lock into the Redis
send buffer, everything else lands on the user's timeline. Every step is idempotent, because an
outbox may be emitted more than once (after a crash, or while its clearing write is pending)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import datetime
from typing import Any

import orjson

from app.dispatch.record import buffer_entry
from app.store.mongo import Database
from app.store.timeline import Timeline
from app.store.users import StoredUser
from app.worker.branch_lock import BranchClaim, BranchLock
from app.worker.metrics import WorkerMetrics
from app.worker.send_buffer import SendBuffer

log = logging.getLogger(__name__)

SEND = "send"


def effect_id(effect: dict[str, Any]) -> str:
    """A send's dispatch id; for other effects a digest of the record, stable across replays."""
    if effect.get("dispatch_id"):
        return str(effect["dispatch_id"])
    return hashlib.sha256(orjson.dumps(effect, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


class Emitter:
    def __init__(
        self,
        branch_lock: BranchLock,
        send_buffer: SendBuffer,
        database: Database,
        metrics: WorkerMetrics,
    ) -> None:
        self._lock = branch_lock
        self._buffer = send_buffer
        self._timeline = Timeline(database)
        self._metrics = metrics

    async def emit(self, users: list[StoredUser], now: datetime) -> None:
        sends = [e for user in users for e in user.outbox if e["kind"] == SEND]
        timeline = [
            {"_id": effect_id(e), "user_id": user.user_id, "recorded_at": now, **e}
            for user in users
            for e in user.outbox
            if e["kind"] != SEND
        ]
        timeline += [
            {"_id": effect_id(e), "user_id": e["user_id"], "recorded_at": now, **e} for e in sends
        ]
        # Independent and idempotent: a failure of either fails the batch, which is redone.
        await asyncio.gather(self._buffer_sends(sends), self._timeline.record(timeline))

    async def _buffer_sends(self, sends: list[dict[str, Any]]) -> None:
        branched = [s for s in sends if s.get("branch")]
        claims = [BranchClaim(s["user_id"], s["branch"][0], s["branch"][1]) for s in branched]
        held = await self._lock.claim_many(claims)
        refused = {s["dispatch_id"] for s, ok in zip(branched, held, strict=True) if not ok}
        for dispatch_id in refused:
            log.error(
                "branch lock refused dispatch %s: another branch of its entry won", dispatch_id
            )
        self._metrics.branch_refused += len(refused)
        allowed = [s for s in sends if s["dispatch_id"] not in refused]
        await self._buffer.add_many([buffer_entry(s) for s in allowed])
        self._metrics.sends_buffered += len(allowed)
