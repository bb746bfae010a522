"""One micro-batch of inputs through the engine: decode, group by user, load the users the
worker's user cache does not hold in one query (app/worker/user_cache.py), apply the engine,
commit each changed user with one conditional write, then emit and record the users' next due
times in the Redis due index.

Effects go into the user's outbox inside that same write and are emitted after it, so a crash
between the write and the emit loses nothing: the input is redelivered (its offset was not
committed), recognised as applied, and the outbox is emitted again. Emitting twice is harmless:
the send buffer is a set and the sender drops repeats by dispatch id. An emitted outbox is marked
in Redis and dropped by the user's next write, which costs no extra write.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from app.engine import (
    Analytics,
    EngineInput,
    JourneyEngine,
    ScheduledEntry,
    Send,
    TimerFired,
    Transition,
    UserEvent,
    VersionMissing,
    input_order,
)
from app.store.users import PARKED_RETRY_TIMER, Parked, StoredUser, UserCommit, UserStore
from app.streams.dead_letters import DeadLetter
from app.topics import RecordError, load_contract
from app.worker.due_index import DueIndex
from app.worker.emitted_marks import EmittedMarks
from app.worker.emitter import Emitter
from app.worker.entry_slots import EntrySlots
from app.worker.metrics import WorkerMetrics
from app.worker.partitions import partition_of
from app.worker.user_cache import UserCache

log = logging.getLogger(__name__)

# user-events as published, and as the repartition step re-produced it by user id.
EVENT_SOURCES = ("user-events", "user-events-by-user")
SOURCES = (*EVENT_SOURCES, "timers")
# Timer effects need no emitting: pending timers live in the state the same write stores.
EMITTED = (Send, Analytics)
MAX_CONFLICT_ROUNDS = 5
# What `decode` raises for a record no retry can fix.
DECODE_ERRORS = (RecordError, ValueError, KeyError)
# Inputs parked for a journey version the worker does not have are tried again after 1 s, 2 s,
# 4 s, ... at most every 5 minutes, and with every input of the user meanwhile.
PARKED_RETRY_FIRST = timedelta(seconds=1)
PARKED_RETRY_MAX = timedelta(minutes=5)
MAX_PARKED = 1000  # a user's parked inputs; later ones go to the dead-letter topic


@dataclass(frozen=True)
class InputRecord:
    """A record as it came off Kafka; `source` is the contract name, not the prefixed topic.
    `timestamp` is the record's Kafka timestamp: an event's receipt time, so a replay after a
    crash or a backlog after an outage judges its event time as the first delivery did."""

    source: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: datetime | None = None


@dataclass(frozen=True)
class DecodedInput:
    record: InputRecord
    input: EngineInput

    @property
    def user_id(self) -> str:
        return self.input.user_id

    def parked(self) -> dict[str, object]:
        """The record as a user document keeps it while it waits for a journey version."""
        return dataclasses.asdict(self.record)


def decode(record: InputRecord, max_bytes: int) -> EngineInput:
    """Bytes to an engine input, or RecordError saying what is wrong with them."""
    if record.source not in SOURCES:
        raise RecordError(record.source, "/", "records of this topic are not worker inputs", "")
    data = load_contract(record.source).decode(record.value, max_bytes)
    if record.source in EVENT_SOURCES:
        return UserEvent.from_record(data, received_at=record.timestamp)
    if data["kind"] == "timer":
        return TimerFired.from_record(data)
    return ScheduledEntry.from_record(data)


def dead_letter(record: InputRecord, error: Exception) -> DeadLetter:
    return DeadLetter.from_error(
        error,
        source_topic=record.source,
        original=record.value,
        key=record.key,
        partition=record.partition,
        offset=record.offset,
    )


class BatchProcessor:
    def __init__(
        self,
        engine: Callable[[], JourneyEngine],
        store: UserStore,
        emitter: Emitter,
        due_index: DueIndex,
        emitted_marks: EmittedMarks,
        partitions: int,
        metrics: WorkerMetrics,
        max_record_bytes: int,
        entry_slots: EntrySlots,
        user_cache: UserCache | None = None,
    ) -> None:
        self._engine = engine
        self._users = UserCache(0) if user_cache is None else user_cache
        self._entry_slots = entry_slots
        self._store = store
        self._emitter = emitter
        self._due_index = due_index
        self._marks = emitted_marks
        self._partitions = partitions
        self._metrics = metrics
        self._max_record_bytes = max_record_bytes

    async def process(self, records: list[InputRecord], now: datetime) -> list[DeadLetter]:
        """Applies the batch; returns the records that must go to the dead-letter topic.
        Transient failures propagate, and the whole batch can then be retried safely."""
        timer = self._metrics.batch_timer(len(records))
        inputs: list[DecodedInput] = []
        letters: list[DeadLetter] = []
        for record in records:
            try:
                inputs.append(DecodedInput(record, decode(record, self._max_record_bytes)))
            except DECODE_ERRORS as error:
                letters.append(dead_letter(record, error))

        by_user: dict[str, list[DecodedInput]] = {}
        for item in inputs:
            by_user.setdefault(item.user_id, []).append(item)

        pending = set(by_user)
        for _ in range(MAX_CONFLICT_ROUNDS):
            if not pending:
                break
            timer.lap("engine")
            users = await self._users.load_many(self._store, pending)
            timer.lap("store")
            for user_id in await self._marks.emitted({u: user.outbox for u, user in users.items()}):
                users[user_id].outbox = []  # went out after its write: not to be stored again
            commits: list[UserCommit] = []
            unchanged_with_outbox: list[StoredUser] = []
            # In the order of each user's first input in the batch: entry slots (entry limits)
            # are answered in the order they are asked, as the simulator asks them.
            for user_id in (u for u in by_user if u in pending):
                user = users[user_id]
                changed, rejected = await self._apply(user, by_user[user_id], now)
                letters.extend(rejected)
                if changed:
                    commits.append(UserCommit(user, user.version, self._partition(user)))
                elif user.outbox:
                    unchanged_with_outbox.append(user)
            timer.lap("engine")
            conflicts = await self._store.commit_many(commits)
            self._users.settle(commits, conflicts)
            timer.lap("store")
            written = [c.user for c in commits if c.user.user_id not in conflicts]
            emitted = written + unchanged_with_outbox
            self._metrics.sends_buffering(emitted)
            # Unchanged users too: a redelivered batch repairs entries a crash left unrecorded.
            due = [
                (user.user_id, self._partition(user), user.next_due_at())
                for user_id, user in users.items()
                if user_id not in conflicts
            ]
            await self._emitter.emit(
                emitted,
                now,
                alongside=partial(self._due_index.queue_record, entries=due),
                after=partial(
                    self._marks.queue_marks,
                    outboxes=[(user.user_id, user.outbox) for user in emitted],
                ),
            )
            timer.lap("emit")
            pending = conflicts
        if pending:
            raise RuntimeError(f"users {sorted(pending)} kept changing under this worker")

        self._metrics.inputs += len(records)
        self._metrics.user_batches += len(by_user)
        self._metrics.dead_letters += len(letters)
        self._metrics.state_writes = self._store.writes
        timer.done()
        return letters

    async def _apply(
        self, user: StoredUser, items: list[DecodedInput], now: datetime
    ) -> tuple[bool, list[DeadLetter]]:
        """Runs the user's inputs through the engine in the simulator's order: events as Kafka
        delivered them, merged with the timers and ticks by the time each reached Journeys (an
        event's record timestamp, a timer's due time), events first at equal times, after the
        inputs parked before for a journey version the engine lacked. Returns whether the user
        changed (and so must be written) and the inputs the engine refused."""
        engine = self._engine()
        letters: list[DeadLetter] = []
        # Skips are decided before anything is applied: a later offset applied first must not
        # make an earlier one of its partition look applied.
        fresh = [
            item
            for item in items
            if not user.applied(item.record.source, item.record.partition, item.record.offset)
        ]
        events = [item for item in fresh if isinstance(item.input, UserEvent)]
        due = sorted(
            (item for item in fresh if not isinstance(item.input, UserEvent)),
            key=lambda item: input_order(item.input),
        )
        ordered = list(heapq.merge(events, due, key=lambda item: input_order(item.input)))
        parked = self._unparked(user, letters)
        waiting: list[DecodedInput] = []
        new_waiting = 0
        missing: VersionMissing | None = None
        for item, new in [(p, False) for p in parked] + [(o, True) for o in ordered]:
            record = item.record
            if missing is not None and not _retry_timer(item.input):
                waiting.append(item)  # after a parked input: in order, or not at all
                new_waiting += new
                user.record_offset(record.source, record.partition, record.offset)
                continue
            try:
                if isinstance(item.input, UserEvent):
                    await self._fire_due_before(engine, user, input_order(item.input)[0], now)
                transition = await self._entry_slots.apply(engine, user.state, item.input, now)
            except VersionMissing as error:
                missing = error
                waiting.append(item)
                new_waiting += new
                user.record_offset(record.source, record.partition, record.offset)
                continue
            except (ValueError, KeyError, LookupError) as error:
                letters.append(dead_letter(record, error))
                continue
            _take(user, transition)
            user.record_offset(record.source, record.partition, record.offset)
            self._metrics.observe_input(item.input, now)
        parked_before = user.parked
        retried = bool(user.parked.records)
        user.parked = self._park(user, waiting, new_waiting, missing, retried, now, letters)
        return user.state.version != user.version or user.parked != parked_before, letters

    def _unparked(self, user: StoredUser, letters: list[DeadLetter]) -> list[DecodedInput]:
        """The user's parked inputs, decoded again, to be tried before the new ones."""
        inputs = []
        for stored in user.parked.records:
            record = InputRecord(**stored)  # type: ignore[arg-type]
            try:
                inputs.append(DecodedInput(record, decode(record, self._max_record_bytes)))
            except DECODE_ERRORS as error:
                letters.append(dead_letter(record, error))
        return inputs

    def _park(
        self,
        user: StoredUser,
        waiting: list[DecodedInput],
        new_waiting: int,
        missing: VersionMissing | None,
        retried: bool,
        now: datetime,
        letters: list[DeadLetter],
    ) -> Parked:
        """Keeps in the user's document the inputs held up by a journey version the worker does
        not have, to try again with backoff: one dead letter (and a metric) when a user's
        inputs are first held up, not one per try; none left once the version is there."""
        if missing is None:
            if retried:
                log.info("user's parked inputs applied after %d tries", user.parked.attempts)
            return Parked()
        if not retried:
            self._metrics.versions_missing += 1
            letters.append(dead_letter(waiting[0].record, _parked_reason(missing)))
        kept, refused = waiting[:MAX_PARKED], waiting[MAX_PARKED:]
        for item in refused:
            letters.append(dead_letter(item.record, _too_many(missing)))
        self._metrics.inputs_parked += max(0, new_waiting - len(refused))
        attempts = user.parked.attempts + 1
        backoff = min(PARKED_RETRY_MAX, PARKED_RETRY_FIRST * 2 ** min(attempts - 1, 20))
        return Parked([item.parked() for item in kept], attempts, now + backoff)

    async def _fire_due_before(
        self, engine: JourneyEngine, user: StoredUser, received: datetime, now: datetime
    ) -> None:
        """Fires the user's timers due before an event reached Journeys, as the simulator does:
        a timer the pump has not published yet (an event from the past, a backlog) must not
        lose its turn to the event. The timer's own record, when it comes, is a no-op. A timer
        of a version the worker does not have parks the event (VersionMissing); one the engine
        refuses is left to its own record, which goes to the dead-letter topic."""
        while due := [t for t in user.state.due_timers(received) if t.due_at < received]:
            timer = due[0]
            fired = TimerFired(user.user_id, timer.timer_id, timer.due_at)
            try:
                transition = await self._entry_slots.apply(engine, user.state, fired, now)
            except VersionMissing:
                raise
            except (ValueError, KeyError, LookupError):
                return
            _take(user, transition)

    def _partition(self, user: StoredUser) -> int:
        return partition_of(user.user_id, self._partitions)


def _take(user: StoredUser, transition: Transition) -> None:
    """The transition's state, and its effects to emit into the user's outbox."""
    user.state = transition.state
    user.outbox.extend(
        effect.to_record() for effect in transition.effects if isinstance(effect, EMITTED)
    )


def _retry_timer(item: EngineInput) -> bool:
    return isinstance(item, TimerFired) and item.timer_id == PARKED_RETRY_TIMER


def _parked_reason(missing: VersionMissing) -> LookupError:
    return LookupError(
        f"{missing}: the input is parked in the user's document, with the user's later inputs"
        " in order, and tried again with backoff until the version is loaded (this record is"
        " not lost: do not replay it)"
    )


def _too_many(missing: VersionMissing) -> LookupError:
    return LookupError(f"{missing}, and the user already has {MAX_PARKED} inputs parked")
