"""The emitter and the Redis recovery on the real servers: a send claims every decision its entry
took (split -> split: both admitted), a different branch of a taken decision is refused, records
in the old single-`branch` form still go through, and a replay after Redis lost its data goes
through the same lock."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from pymongo.errors import AutoReconnect

from app.engine import JourneyEngine, Send, TimerFired, UserEvent, UserState, load_journey_text
from app.keyspace import Keyspace
from app.store.mongo import close_client, new_client
from app.store.timeline import Timeline
from app.store.users import StoredUser, UserStore
from app.worker.branch_lock import BranchLock
from app.worker.due_index import DueIndex
from app.worker.emitted_marks import EmittedMarks
from app.worker.emitter import Emitter, timeline_entry
from app.worker.metrics import WorkerMetrics
from app.worker.redis_recovery import RedisRecovery
from app.worker.send_buffer import SendBuffer
from tests.conftest import BOTH_REDIS
from tests.projected import ProjectedAtOnce

pytestmark = BOTH_REDIS

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
SPLIT_THEN_SPLIT = """
id: j
version: 1
entry: {event: signed_up}
steps:
  first:
    type: split
    branches:
      - {id: a, percent: 50, next: hello}
      - {id: b, percent: 50, next: hello}
  hello: {type: message, channel: email, template: hello, next: wait}
  wait: {type: delay, duration: 1h, next: second}
  second:
    type: split
    branches:
      - {id: x, percent: 50, next: bye}
      - {id: y, percent: 50, next: bye}
  bye: {type: message, channel: email, template: bye}
"""


def split_then_split_sends() -> list[dict[str, Any]]:
    """The records of the entry's two sends: hello after the first split, bye after both."""
    engine = JourneyEngine([load_journey_text(SPLIT_THEN_SPLIT)])
    entered = engine.apply(UserState.new("u"), UserEvent("e1", "u", "signed_up", T0), T0)
    (timer,) = entered.state.timers
    fired = engine.apply(entered.state, TimerFired("u", timer.timer_id, timer.due_at), T0)
    return [e.to_record() for e in [*entered.effects, *fired.effects] if isinstance(e, Send)]


def other_branch(send: dict[str, Any], decision: int, dispatch_id: str) -> dict[str, Any]:
    """The same send as if another branch of one of its decisions had won."""
    branches = [list(pair) for pair in send["branches"]]
    branches[decision][1] = {"a": "b", "b": "a", "x": "y", "y": "x"}[branches[decision][1]]
    return {**send, "dispatch_id": dispatch_id, "branches": branches}


@dataclass
class Parts:
    lock: BranchLock
    buffer: SendBuffer
    metrics: WorkerMetrics
    emitter: Emitter


@pytest.fixture
def parts(store_db, redis_client, unique) -> Parts:
    buffer = SendBuffer(redis_client, prefix=unique)
    lock = BranchLock(redis_client, unique, 3600)
    metrics = WorkerMetrics()
    emitter = Emitter(lock, buffer, store_db, metrics, ProjectedAtOnce(store_db))
    return Parts(lock, buffer, metrics, emitter)


async def emit(emitter: Emitter, *sends: dict[str, Any]) -> None:
    user = StoredUser("u", UserState.new("u"), outbox=list(sends))
    await emitter.emit([user], T0)


async def test_split_then_split_sends_are_admitted_and_other_branches_refused(parts) -> None:
    buffer, metrics, emitter = parts.buffer, parts.metrics, parts.emitter
    hello, bye = split_then_split_sends()
    assert [len(hello["branches"]), len(bye["branches"])] == [1, 2]

    await emit(emitter, hello, bye)
    assert await buffer.pending() == 2 and metrics.branch_refused == 0

    await emit(emitter, other_branch(bye, 0, "rogue-first"), other_branch(bye, 1, "rogue-second"))
    assert metrics.branch_refused == 2
    assert await buffer.pending() == 2

    await emit(emitter, hello, bye)  # a replayed outbox: the same branches are admitted again
    assert metrics.branch_refused == 2 and metrics.sends_buffered == 4


async def test_what_goes_alongside_and_after_the_sends_is_recorded(
    parts, redis_client, unique
) -> None:
    """The processor's due index entries go with the sends' buffering, its emitted marks after
    it (behind it on one Redis, in a pipeline of their own on a cluster)."""
    hello, bye = split_then_split_sends()
    user = StoredUser("u", UserState.new("u"), outbox=[hello, bye])
    marks, index = EmittedMarks(redis_client, unique), DueIndex(redis_client, unique)
    await parts.emitter.emit(
        [user],
        T0,
        alongside=partial(index.queue_record, entries=[("u", 3, T0)]),
        after=partial(marks.queue_marks, outboxes=[("u", user.outbox)]),
    )
    assert await parts.buffer.pending() == 2 and parts.metrics.sends_buffered == 2
    assert await marks.emitted({"u": user.outbox}) == {"u"}
    assert await redis_client.zscore(Keyspace(unique).due_index(3), "u") == T0.timestamp()


async def test_records_in_the_old_single_branch_form_still_go_through_the_lock(parts) -> None:
    buffer, metrics, emitter = parts.buffer, parts.metrics, parts.emitter
    hello, _ = split_then_split_sends()
    old = {k: v for k, v in hello.items() if k != "branches"}
    await emit(
        emitter,
        {**old, "dispatch_id": "old-a", "branch": ["j:u:entry-1", "a"]},
        {**old, "dispatch_id": "old-none", "branch": None},
        {**old, "dispatch_id": "old-b", "branch": ["j:u:entry-1", "b"]},
    )
    assert metrics.branch_refused == 1 and metrics.sends_buffered == 2
    assert await buffer.pending() == 2


async def test_a_replay_after_redis_lost_its_data_goes_through_the_lock(
    parts, settings, store_db, redis_client, unique
) -> None:
    hello, bye = split_then_split_sends()
    rogue = other_branch(hello, 0, "rogue")
    now = T0 + timedelta(minutes=10)
    timeline = [
        timeline_entry("u", send, now - timedelta(minutes=minutes))
        for send, minutes in ((hello, 3), (rogue, 2), (bye, 1))
    ]
    await Timeline(store_db).record(timeline)
    await store_db["deliveries"].insert_one({"_id": hello["dispatch_id"], "outcome": "sent"})
    recovery = RedisRecovery(
        redis_client,
        unique,
        parts.lock,
        parts.buffer,
        store_db,
        DueIndex(redis_client, unique),
        UserStore(store_db, settings.mongo_bulk_ops),
    )
    assert await recovery.check(now) == 1  # bye; hello was delivered and holds its branch
    assert await parts.buffer.pending() == 1


async def test_a_recovery_that_fails_runs_again_at_the_next_check(
    parts, settings, store_db, redis_client, unique
) -> None:
    """The store down as Redis comes back empty (a port nothing listens on): the recovery fails,
    and the next check, with the store back, puts the send back. It used to set the epoch key
    first, and a failed recovery was never run again."""
    _, bye = split_then_split_sends()
    now = T0 + timedelta(minutes=10)
    await Timeline(store_db).record([timeline_entry("u", bye, now - timedelta(minutes=1))])

    def recovery(database: Any) -> RedisRecovery:
        return RedisRecovery(
            redis_client,
            unique,
            parts.lock,
            parts.buffer,
            database,
            DueIndex(redis_client, unique),
            UserStore(database, settings.mongo_bulk_ops),
        )

    down = dataclasses.replace(
        settings, mongo_url="mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=300"
    )
    client = new_client(down)
    try:
        with pytest.raises(AutoReconnect):
            await recovery(client[store_db.name]).check(now)
    finally:
        await close_client(client)
    assert await parts.buffer.pending() == 0
    assert await recovery(store_db).check(now) == 1
    assert await parts.buffer.pending() == 1
    assert await recovery(store_db).check(now) == 0  # recovered once
