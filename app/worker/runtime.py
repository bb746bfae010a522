"""The connections and components the worker's agent and timers share, and the rules for running
a batch: never skip an input, retry what is transient, dead-letter what no retry can fix."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from app.config import Settings, WorkerSettings
from app.engine import EventTimePolicy, JourneyEngine
from app.keyspace import Keyspace
from app.metrics_snapshots import publish_snapshot
from app.redis_client import open_redis
from app.retry import TRANSIENT_ERRORS, Backoff, retry_transient
from app.store.figures import JourneyFigures
from app.store.journeys import JourneyRegistry
from app.store.mongo import close_client, new_client
from app.store.rules import RulesRegistry
from app.store.schema import ensure_indexes
from app.store.timeline import Timeline
from app.store.users import UserStore
from app.streams.dead_letters import DeadLetter, DeadLetterWriter
from app.streams.producer import new_producer
from app.topics import load_contract
from app.worker.branch_lock import BranchLock
from app.worker.due_index import DueIndex
from app.worker.emitted_marks import EmittedMarks
from app.worker.emitter import Emitter
from app.worker.entry_slots import EntrySlots
from app.worker.metrics import WorkerMetrics
from app.worker.processor import BatchProcessor, InputRecord
from app.worker.redis_recovery import RedisRecovery
from app.worker.repartition import Repartitioner
from app.worker.scheduler import Scheduler
from app.worker.send_buffer import Batcher, SendBuffer
from app.worker.timeline_projector import TimelineProjector
from app.worker.timeline_publisher import TimelinePublisher
from app.worker.timer_pump import TimerPump
from app.worker.user_cache import UserCache

log = logging.getLogger(__name__)

# One step of the worker over a micro-batch: returns the records for the dead-letter topic.
Step = Callable[[list[InputRecord], datetime], Awaitable[list[DeadLetter]]]
# A micro-batch of events is applied this many records at a time, the batch lock taken for each
# piece, so a batch of due timers waits for one piece (a fraction of a second in a burst), not
# for a whole batch of events. Faust acks the micro-batch once every piece is through.
EVENTS_PER_TURN = 100


def utc_now() -> datetime:
    return datetime.now(UTC)


class WorkerRuntime:
    def __init__(
        self,
        settings: Settings,
        worker_settings: WorkerSettings,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.settings = settings
        self.worker_settings = worker_settings
        self.clock = clock
        self.metrics = WorkerMetrics()
        self.ready = asyncio.Event()
        self.partitions = load_contract("timers").partitions
        self._event_time = EventTimePolicy(
            max_past=timedelta(seconds=worker_settings.event_max_past_seconds),
            max_future=timedelta(seconds=worker_settings.event_max_future_seconds),
        )
        self._engine = JourneyEngine([], event_time=self._event_time)
        self.user_cache = UserCache(worker_settings.user_cache_bytes)
        self._journeys_fingerprint = ""
        self._batch_lock = asyncio.Lock()
        self._repartition_lock = asyncio.Lock()
        self._projection_lock = asyncio.Lock()
        self._in_flight: set[asyncio.Future[bool]] = set()
        self.worker_id = uuid.uuid4().hex[:12]

    async def start(self) -> None:
        s, ws = self.settings, self.worker_settings
        self.mongo = new_client(s)
        database = self.mongo[s.mongo_db]
        self.redis = await open_redis(s)
        self.producer = new_producer(s)
        await retry_transient(self.producer.start, what="starting the Kafka producer")
        await retry_transient(self.check_partitions, what="checking the topics' partitions")
        self.store = UserStore(database, s.mongo_bulk_ops)
        self.registry = JourneyRegistry(database)
        self.rules = RulesRegistry(database)
        await retry_transient(lambda: ensure_indexes(database), what="creating the indexes")
        await retry_transient(self.refresh_journeys, what="loading journeys")
        send_buffer = SendBuffer(self.redis, s.redis_prefix, ws.send_bucket_seconds)
        branch_lock = BranchLock(self.redis, s.redis_prefix, ws.branch_lock_ttl_seconds)
        emitter = Emitter(
            branch_lock,
            send_buffer,
            database,
            self.metrics,
            TimelinePublisher(self.producer, s.topic("timeline")),
        )
        due_index = DueIndex(self.redis, s.redis_prefix)
        self.redis_recovery = RedisRecovery(
            self.redis, s.redis_prefix, branch_lock, send_buffer, database, due_index, self.store
        )
        self.processor = BatchProcessor(
            engine=lambda: self._engine,
            store=self.store,
            emitter=emitter,
            due_index=due_index,
            emitted_marks=EmittedMarks(self.redis, s.redis_prefix),
            partitions=self.partitions,
            metrics=self.metrics,
            max_record_bytes=ws.max_record_bytes,
            entry_slots=EntrySlots(
                self.redis,
                s.redis_prefix,
                database,
                minute_ttl_seconds=int(ws.event_max_past_seconds) + 86400,
            ),
            user_cache=self.user_cache,
        )
        self.repartitioner = Repartitioner(
            self.producer,
            s.topic("user-events-by-user"),
            self.partitions,
            self.metrics,
            max_record_bytes=ws.max_record_bytes,
            source_partitions=self.user_events_partitions,
        )
        self.timeline_projector = TimelineProjector(Timeline(database), JourneyFigures(database))
        self.dead_letters = DeadLetterWriter(self.producer, s, "worker")
        self.batcher = Batcher(
            self.redis,
            self.producer,
            s.topic("send"),
            prefix=s.redis_prefix,
            batch_size=ws.send_batch_size,
            hold_seconds=ws.send_hold_seconds,
            max_wait_seconds=ws.send_max_wait_seconds,
            metrics=self.metrics,
        )
        self.timer_pump = TimerPump(
            self.store,
            due_index,
            self.producer,
            s.topic("timers"),
            self.partitions,
            self.metrics,
            lease_seconds=ws.timer_lease_seconds,
        )
        self.scheduler = Scheduler(
            database, self.store, self.producer, s.topic("timers"), self.partitions
        )
        # Before any input: a Redis that lost its data is recovered first, and a new namespace
        # has its epoch before a send is buffered (a first check racing the first sends put
        # them on the send topic a second time).
        await retry_transient(
            lambda: self.redis_recovery.check(self.clock()), what="checking Redis"
        )
        # What exists now (the libraries' objects, the clients, the journeys) lives as long as
        # the worker: kept out of the collector's full scans, which cost about 80 us of CPU per
        # event before (20 after), measured in-process on batches of 500 events.
        gc.collect()
        gc.freeze()
        self.ready.set()

    async def stop(self) -> None:
        """Waits for the batches in flight (all their pieces), then closes the connections."""
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        async with self._repartition_lock, self._batch_lock, self._projection_lock:
            self.ready.clear()
            await self.producer.stop()
            await self.redis.aclose()
            await close_client(self.mongo)

    async def check_partitions(self) -> None:
        """The worker sets the partition of every record it produces to these topics: one with
        another count than its contract (never applied, or created by the broker on first use)
        is refused at start, rather than failing record by record. user-events may have any
        count; with the contract's, its records on their user's partition are applied there."""
        topic = self.settings.topic("user-events")
        self.user_events_partitions = len(await self.producer.partitions_for(topic))
        for name in ("user-events-by-user", "timers"):
            topic = self.settings.topic(name)
            found = len(await self.producer.partitions_for(topic))
            if found != self.partitions:
                raise RuntimeError(
                    f"topic {topic} has {found} partitions, its contract says {self.partitions}: "
                    "run `journeys topics apply` (and see topics/ for changing a count)"
                )

    @property
    def engine(self) -> JourneyEngine:
        return self._engine

    async def refresh_journeys(self) -> None:
        """Reloads the journeys and the rules for every journey when either changed."""
        fingerprint = await self.registry.fingerprint() + await self.rules.fingerprint()
        if fingerprint != self._journeys_fingerprint:
            self._engine = await self.registry.engine(await self.rules.current(), self._event_time)
            self._journeys_fingerprint = fingerprint
            log.info("journeys and rules loaded (fingerprint %s)", fingerprint[:12])

    async def publish_metrics(self) -> None:
        """Each worker's counters go to its shard of the metrics hashes, which the API's /metrics
        reads."""
        key = Keyspace(self.settings.redis_prefix).worker_metrics(self.worker_id)
        await publish_snapshot(
            self.redis, key, self.worker_id, self.metrics.snapshot(), time.time()
        )

    async def run_batch(self, records: list[InputRecord]) -> None:
        """Applies a micro-batch of user-events-by-user or of timers through the engine; events
        in pieces (EVENTS_PER_TURN), so a batch of timers takes its turn between two of them."""
        started = time.monotonic()
        piece = EVENTS_PER_TURN if any(r.source != "timers" for r in records) else len(records)
        if await self._run_to_completion(self.processor.process, records, self._batch_lock, piece):
            self.batcher.observe_batch(time.monotonic() - started)

    async def take_user_events(self, in_place: list[InputRecord], moved: list[InputRecord]) -> None:
        """A micro-batch of user-events: the records on their user's partition applied as a
        batch of the engine step, the others re-produced to user-events-by-user by user id
        (under a lock of its own: the copies' batches overlap the engine step's)."""
        if moved:
            await self._run_to_completion(self.repartitioner.process, moved, self._repartition_lock)
        if in_place:
            await self.run_batch(in_place)

    async def project_timeline(self, records: list[InputRecord]) -> None:
        """Writes a batch of the `timeline` topic to the timeline collection. Its own lock: the
        journeys step's batches produce to that topic meanwhile."""
        await self._run_to_completion(
            self.timeline_projector.process, records, self._projection_lock
        )

    async def _run_to_completion(
        self, step: Step, records: list[InputRecord], lock: asyncio.Lock, piece: int = 0
    ) -> bool:
        """Runs to completion even when the worker is stopping: Faust acks the batch as soon as
        this returns or is cancelled, so a half-done batch must never be left behind. Returns
        whether the batch went through whole (not record by record). With `piece`, the records
        go through that many at a time, the lock taken for each piece."""
        task = asyncio.ensure_future(self._run_pieces(step, records, lock, piece))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            await task
            raise

    async def _run_pieces(
        self, step: Step, records: list[InputRecord], lock: asyncio.Lock, piece: int
    ) -> bool:
        size = piece or len(records) or 1
        whole = True
        for first in range(0, len(records), size):
            whole &= await self._run(step, records[first : first + size], lock)
        return whole

    async def _run(self, step: Step, records: list[InputRecord], lock: asyncio.Lock) -> bool:
        async with lock:
            whole = True
            try:
                letters = await retry_transient(lambda: step(records, self.clock()), what="a batch")
            except Exception:
                log.exception("a batch of %d failed; retrying its records one by one", len(records))
                letters, whole = await self._one_by_one(step, records), False
            await retry_transient(
                lambda: self.dead_letters.write(letters), what="writing dead letters"
            )
            return whole

    async def _one_by_one(self, step: Step, records: list[InputRecord]) -> list[DeadLetter]:
        """Isolates the record that breaks a batch, so it alone goes to the dead-letter topic."""
        letters: list[DeadLetter] = []
        for record in records:
            try:
                letters += await retry_transient(
                    lambda r=record: step([r], self.clock()), what="a record"
                )
            except Exception as error:
                log.exception(
                    "record %s/%d@%d failed", record.source, record.partition, record.offset
                )
                letters.append(
                    DeadLetter.from_error(
                        # The error's type alone: its text can quote the record (personal data).
                        RuntimeError(
                            f"the worker failed on this record ({type(error).__name__}; "
                            "the worker's log has the details)"
                        ),
                        source_topic=record.source,
                        original=record.value,
                        key=record.key,
                        partition=record.partition,
                        offset=record.offset,
                    )
                )
        return letters

    async def guarded(self, what: str, job: Callable[[], Awaitable[object]]) -> None:
        """Background jobs (batcher, timer pump, journey refresh) log and go on: their next round
        retries, and nothing they do is lost by waiting."""
        if not self.ready.is_set():
            return
        try:
            await job()
        except TRANSIENT_ERRORS as error:
            log.warning("%s: transient failure %r; next round retries", what, error)
            await asyncio.sleep(Backoff().delay(1))
        except Exception:
            log.exception("%s failed; next round retries", what)
