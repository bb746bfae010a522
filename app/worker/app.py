"""The worker's Faust app: one agent over user-events and timers (co-partitioned by user id),
with concurrency 1, so one worker applies a partition's inputs in order; scale comes from more
partitions and more workers. Background timers drain the send buffers, pump due timers for the
partitions this worker owns, pick up newly deployed journeys, and (on the leader) enter the
audiences of recurring journeys at their ticks."""

from __future__ import annotations

import faust
import mode

from app.config import Settings, WorkerSettings
from app.topics import load_contract
from app.worker.processor import InputRecord
from app.worker.runtime import WorkerRuntime


def create_app(
    settings: Settings, worker_settings: WorkerSettings
) -> tuple[faust.App, WorkerRuntime]:
    ws = worker_settings
    runtime = WorkerRuntime(settings, ws)
    app = faust.App(
        ws.app_id,
        broker=settings.kafka_url,
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=load_contract("user-events").partitions,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        web_enabled=ws.web_port > 0,
        web_port=ws.web_port or 6066,
        producer_acks=-1,
    )
    sources = {settings.topic(name): name for name in ("user-events", "timers")}
    timers_topic = settings.topic("timers")
    inputs = app.topic(*sources, key_serializer="raw", value_serializer="raw")

    @app.service
    class Lifecycle(mode.Service):
        async def on_start(self) -> None:
            await runtime.start()

        async def on_stop(self) -> None:
            await runtime.stop()

    @app.agent(inputs, concurrency=1)
    async def journeys(stream: faust.StreamT) -> None:
        await runtime.ready.wait()
        async for events in stream.take_events(ws.batch_size, within=ws.batch_within):
            await runtime.run_batch(
                [
                    InputRecord(
                        source=sources[event.message.topic],
                        partition=event.message.partition,
                        offset=event.message.offset,
                        key=event.message.key,
                        value=event.message.value,
                    )
                    for event in events
                ]
            )

    @app.timer(interval=ws.batcher_interval)
    async def drain_send_buffers() -> None:
        await runtime.guarded(
            "draining send buffers", lambda: runtime.batcher.drain_due(runtime.clock())
        )

    @app.timer(interval=ws.timer_pump_interval)
    async def pump_timers() -> None:
        owned = {tp.partition for tp in app.consumer.assignment() if tp.topic == timers_topic}
        await runtime.guarded(
            "pumping timers", lambda: runtime.timer_pump.pump(owned, runtime.clock())
        )

    @app.timer(interval=ws.timer_sweep_interval)
    async def sweep_timers() -> None:
        owned = {tp.partition for tp in app.consumer.assignment() if tp.topic == timers_topic}
        await runtime.guarded(
            "sweeping timers", lambda: runtime.timer_pump.sweep(owned, runtime.clock())
        )

    @app.timer(interval=ws.journeys_poll_interval)
    async def refresh_journeys() -> None:
        await runtime.guarded("refreshing journeys", runtime.refresh_journeys)

    @app.timer(interval=2.0)
    async def recover_from_an_empty_redis() -> None:
        await runtime.guarded(
            "checking Redis", lambda: runtime.redis_recovery.check(runtime.clock())
        )

    @app.timer(interval=5.0)
    async def publish_metrics() -> None:
        await runtime.guarded("publishing metrics", runtime.publish_metrics)

    @app.timer(interval=ws.scheduler_interval, on_leader=True)
    async def run_schedules() -> None:
        await runtime.guarded(
            "running schedules", lambda: runtime.scheduler.run(runtime.engine, runtime.clock())
        )

    return app, runtime
