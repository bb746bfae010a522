"""The worker's Faust app, in three steps, in agents of concurrency 1 (Faust commits past a
message still in flight when an agent runs several at once: faust-streaming issue 606):

1. repartition: user-events, whatever partitioner or key its producers used, re-produced to
   user-events-by-user by user id (app/worker/repartition.py), but for the records already on
   their user's partition, which go straight to step 2;
2. journeys: user-events-by-user and timers (and user-events on their partition), co-partitioned
   by user id, so one worker applies a partition's inputs in order; scale comes from more
   partitions and more workers. One agent per topic, so due timers do not queue behind a burst
   of events (their batches take turns);
3. timeline: the effects step 2 emitted that are not sends, written to the timeline collection
   in large batches (app/worker/timeline_projector.py). In the worker, so it scales and fails
   over with it through the same consumer group, and shares its connections and batch rules.

Background timers drain the send buffers, pump due timers for the partitions this worker owns,
pick up newly deployed journeys, and (on the leader) enter the audiences of recurring journeys
at their ticks. An agent that raises stops consuming (faust issue 527): all hand their batches
to the runtime, which retries transient failures and dead-letters what no retry can fix, and the
timers' jobs are guarded the same way."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime

import faust
import mode
from faust.types import TP

from app.config import Settings, WorkerSettings
from app.metrics_snapshots import PUBLISH_INTERVAL_SECONDS
from app.topics import load_contract
from app.worker.metrics import WorkerMetrics
from app.worker.processor import InputRecord
from app.worker.runtime import WorkerRuntime

# How many records a poll hands the agents' stream buffers at most, and how many the events'
# buffer holds. Faust stops fetching a partition whose buffer is 80% full, and a poll no larger
# than the 20% left never fills it: a full buffer would block the delivery of every topic's
# records, timers included, until its agent took a batch. And the records of the partitions
# being fetched come out of a poll in partition order: with events fetched (their buffer below
# 40%) a poll can hold events only, so a small events buffer is refilled by a few small polls
# and most polls carry the timers. A burst's backlog waits in Kafka, not in the worker.
MAX_POLL_RECORDS = 100
EVENTS_BUFFERED = 1_000


def create_app(
    settings: Settings, worker_settings: WorkerSettings
) -> tuple[faust.App, WorkerRuntime]:
    runtime = WorkerRuntime(settings, worker_settings)
    app = _faust_app(settings, worker_settings)
    _run_with_the_app(app, runtime)
    _forget_users_on_rebalance(app, runtime)
    _add_repartition_agent(app, settings, runtime)
    _add_journeys_agents(app, settings, runtime)
    _add_timeline_projector(app, settings, runtime)
    _add_timer_pump(app, settings, runtime)
    _add_housekeeping_timers(app, runtime)
    return app, runtime


def _faust_app(settings: Settings, ws: WorkerSettings) -> faust.App:
    return faust.App(
        ws.app_id,
        broker=settings.kafka_url,
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=load_contract("user-events-by-user").partitions,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        broker_max_poll_records=MAX_POLL_RECORDS,
        web_enabled=ws.web_port > 0,
        web_port=ws.web_port or 6066,
        producer_acks=-1,
        datadir=ws.data_dir,
        broker_session_timeout=ws.session_timeout_seconds,
        broker_heartbeat_interval=ws.heartbeat_interval_seconds,
    )


def _run_with_the_app(app: faust.App, runtime: WorkerRuntime) -> None:
    """The runtime's connections open when the app starts and close when it stops."""

    @app.service
    class Lifecycle(mode.Service):
        async def on_start(self) -> None:
            await runtime.start()

        async def on_stop(self) -> None:
            await runtime.stop()


def _forget_users_on_rebalance(app: faust.App, runtime: WorkerRuntime) -> None:
    """The user cache holds what this worker wrote last, the stored documents only while it owns
    their partitions: a partition lost may come back written by another worker. Partitions are
    revoked, then assigned, on every rebalance; both clear the cache."""

    @app.on_partitions_revoked.connect
    async def forget_on_revoke(sender: faust.App, revoked: set[TP], **kwargs: object) -> None:
        runtime.user_cache.clear()

    @app.on_partitions_assigned.connect
    async def forget_on_assign(sender: faust.App, assigned: set[TP], **kwargs: object) -> None:
        runtime.user_cache.clear()


def _add_repartition_agent(app: faust.App, settings: Settings, runtime: WorkerRuntime) -> None:
    """user-events in: the records on their user's partition applied, the others re-produced to
    user-events-by-user; a batch's offsets are committed (Faust acks it) once the first are
    stored and the others acknowledged by Kafka."""
    ws = runtime.worker_settings
    sources = {settings.topic("user-events"): "user-events"}
    user_events = app.topic(
        *sources, key_serializer="raw", value_serializer="raw", maxsize=EVENTS_BUFFERED
    )

    @app.agent(user_events, concurrency=1)
    async def repartition(stream: faust.StreamT) -> None:
        await runtime.ready.wait()
        async for events in stream.take_events(ws.batch_size, within=ws.batch_within):
            in_place, moved = runtime.repartitioner.split(
                _input_records(events, sources), runtime.clock()
            )
            applied = {(record.partition, record.offset) for record in in_place}
            _observe_arrivals(
                runtime.metrics,
                [e for e in events if (e.message.partition, e.message.offset) in applied],
            )
            await runtime.take_user_events(in_place, moved)


def _add_journeys_agents(app: faust.App, settings: Settings, runtime: WorkerRuntime) -> None:
    """user-events-by-user and timers through the engine, each topic in an agent (and so a stream
    buffer) of its own: in one stream, a due timer waited behind every event fetched before it,
    seconds in a burst. Their batches take turns through the runtime's batch lock, so a timer
    batch waits for at most the one batch of events in progress; per-user order is the
    processor's (`BatchProcessor._apply`: an event fires the timers due before its receipt)."""
    _add_engine_agent(app, settings, runtime, "user-events-by-user", EVENTS_BUFFERED)
    _add_engine_agent(app, settings, runtime, "timers", None)


def _add_engine_agent(
    app: faust.App, settings: Settings, runtime: WorkerRuntime, name: str, buffered: int | None
) -> None:
    ws = runtime.worker_settings
    sources = {settings.topic(name): name}
    inputs = app.topic(*sources, key_serializer="raw", value_serializer="raw", maxsize=buffered)

    async def journeys(stream: faust.StreamT) -> None:
        await runtime.ready.wait()
        async for events in stream.take_events(ws.batch_size, within=ws.batch_within):
            _observe_arrivals(runtime.metrics, events)
            await runtime.run_batch(_input_records(events, sources))

    app.agent(inputs, name=f"journeys-{name}", concurrency=1)(journeys)


def _add_timeline_projector(app: faust.App, settings: Settings, runtime: WorkerRuntime) -> None:
    """timeline in, the timeline collection out; a batch's offsets are committed (Faust acks it)
    once its documents are written."""
    ws = runtime.worker_settings
    sources = {settings.topic("timeline"): "timeline"}
    records = app.topic(*sources, key_serializer="raw", value_serializer="raw")

    @app.agent(records, concurrency=1)
    async def project_timeline(stream: faust.StreamT) -> None:
        await runtime.ready.wait()
        async for events in stream.take_events(
            ws.timeline_batch_size, within=ws.timeline_batch_within
        ):
            await runtime.project_timeline(_input_records(events, sources))


def _input_records(events: Sequence[faust.EventT], sources: dict[str, str]) -> list[InputRecord]:
    """Faust events as the runtime takes them; `sources` maps each topic to its contract name."""
    return [
        InputRecord(
            source=sources[event.message.topic],
            partition=event.message.partition,
            offset=event.message.offset,
            key=event.message.key,
            value=event.message.value,
            timestamp=_kafka_time(event.message.timestamp),
        )
        for event in events
    ]


def _observe_arrivals(metrics: WorkerMetrics, events: Sequence[faust.EventT]) -> None:
    """Each record's time on Kafka (its timestamp to the consumer handing it over, which Faust's
    monitor stamps as `time_in` on the monotonic clock), then waiting for its micro-batch."""
    wall, now = time.time(), time.monotonic()
    for event in events:
        message = event.message
        if message.time_in is None:
            continue
        if message.timestamp is not None and message.timestamp >= 0:
            metrics.observe_stage("kafka", wall - (now - message.time_in) - message.timestamp)
        metrics.observe_stage("batch_wait", now - message.time_in)


def _kafka_time(seconds: float | None) -> datetime | None:
    """A record's Kafka timestamp; Kafka gives -1 (and Faust None) for a record without one."""
    return datetime.fromtimestamp(seconds, UTC) if seconds is not None and seconds >= 0 else None


def _add_timer_pump(app: faust.App, settings: Settings, runtime: WorkerRuntime) -> None:
    """Due timers of the partitions this worker owns, from the Redis due index and, slowly,
    from a MongoDB sweep."""
    ws = runtime.worker_settings
    timers_topic = settings.topic("timers")

    def owned() -> set[int]:
        return {tp.partition for tp in app.consumer.assignment() if tp.topic == timers_topic}

    swept: set[int] = set()  # the partitions owned at the last round

    @app.timer(interval=ws.timer_pump_interval)
    async def pump_timers() -> None:
        """Partitions this worker just gained (at start, or from a worker that died) are swept
        once first: the due index entries a dead pump had claimed but not published would
        otherwise wait for their claims to lapse (TIMER_LEASE_SECONDS)."""
        partitions = owned()
        gained = partitions - swept
        swept.intersection_update(partitions)

        async def sweep_gained() -> None:
            await runtime.timer_pump.sweep(gained, runtime.clock())
            swept.update(gained)  # not before: a failed sweep is tried again next round

        if gained:
            await runtime.guarded("sweeping gained partitions", sweep_gained)
        await runtime.guarded(
            "pumping timers", lambda: runtime.timer_pump.pump(partitions, runtime.clock())
        )

    @app.timer(interval=ws.timer_sweep_interval)
    async def sweep_timers() -> None:
        await runtime.guarded(
            "sweeping timers", lambda: runtime.timer_pump.sweep(owned(), runtime.clock())
        )


def _add_housekeeping_timers(app: faust.App, runtime: WorkerRuntime) -> None:
    """Send-buffer drains, journey refreshes, the empty-Redis check, metrics and schedules."""
    ws = runtime.worker_settings

    @app.timer(interval=ws.batcher_interval)
    async def drain_send_buffers() -> None:
        await runtime.guarded(
            "draining send buffers", lambda: runtime.batcher.drain_due(runtime.clock())
        )

    @app.timer(interval=ws.journeys_poll_interval)
    async def refresh_journeys() -> None:
        await runtime.guarded("refreshing journeys", runtime.refresh_journeys)

    @app.timer(interval=2.0)
    async def recover_from_an_empty_redis() -> None:
        await runtime.guarded(
            "checking Redis", lambda: runtime.redis_recovery.check(runtime.clock())
        )

    @app.timer(interval=PUBLISH_INTERVAL_SECONDS)
    async def publish_metrics() -> None:
        await runtime.guarded("publishing metrics", runtime.publish_metrics)

    @app.timer(interval=ws.scheduler_interval, on_leader=True)
    async def run_schedules() -> None:
        await runtime.guarded(
            "running schedules", lambda: runtime.scheduler.run(runtime.engine, runtime.clock())
        )
