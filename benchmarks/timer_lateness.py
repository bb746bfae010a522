"""Timer lateness while an input burst runs, through one worker: users stored waiting on timers
that come due at a steady rate (stored directly, so no event of theirs queues behind the burst),
and a burst of events published just before the first of them comes due. Lateness is the
worker's own metric, from each timer's due time to the worker applying it.

    python -m benchmarks.timer_lateness [--timers 2000] [--rate 100] [--events 20000]

Prints one JSON object: the lateness percentiles and how long the burst took."""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from app.config import Settings
from app.engine import JourneyEngine, UserEvent, UserState, load_journey_text
from app.redis_client import new_redis
from app.store.mongo import close_client, new_client
from app.store.users import StoredUser, UserCommit, UserStore
from app.topics import load_contract
from app.worker.due_index import DueIndex
from app.worker.partitions import partition_of
from benchmarks.run import BENCH_JOURNEY, TIMER_JOURNEY, Namespace, events, publish, quantile

DELAY = timedelta(seconds=3)  # TIMER_JOURNEY's delay
LEAD_SECONDS = 4.0  # from storing the waiting users to the first timer coming due


async def store_waiting_users(settings: Settings, count: int, rate: float, first_due: datetime):
    """`count` users in TIMER_JOURNEY's delay as a worker would have left them (documents and due
    index entries), user i's timer due `i / rate` seconds after `first_due`."""
    engine = JourneyEngine([load_journey_text(TIMER_JOURNEY)])
    partitions = load_contract("timers").partitions
    client = new_client(settings)
    redis = new_redis(settings)
    store = UserStore(client[settings.mongo_db], settings.mongo_bulk_ops)
    try:
        commits = []
        for i in range(count):
            user_id = f"timer-{i:07d}"
            at = first_due - DELAY + timedelta(seconds=i / rate)
            tick = UserEvent(event_id=f"tick-{i}", user_id=user_id, name="tick", at=at)
            state = engine.apply(UserState.new(user_id), tick, at).state
            stored = StoredUser(user_id=user_id, state=state)
            commits.append(UserCommit(stored, 0, partition_of(user_id, partitions)))
        await store.collection.insert_many([c.document() for c in commits], ordered=False)
        await DueIndex(redis, settings.redis_prefix).record(
            (c.user.user_id, c.partition, c.user.state.next_due_at()) for c in commits
        )
    finally:
        await redis.aclose()
        await close_client(client)


async def pump_lateness(settings: Settings) -> list[float]:
    """From each timer's due time to the timer pump publishing it (the records' `fired_at`)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    lateness: list[float] = []
    try:
        topic = settings.topic("timers")
        partitions = [TopicPartition(topic, p) for p in range(load_contract("timers").partitions)]
        consumer.assign(partitions)
        count = sum((await consumer.end_offsets(partitions)).values())
        while len(lateness) < count:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                for message in messages:
                    record = orjson.loads(message.value)
                    fired, due = (datetime.fromisoformat(record[k]) for k in ("fired_at", "due_at"))
                    lateness.append((fired - due).total_seconds())
    finally:
        await consumer.stop()
    return lateness


async def measure(timers: int, rate: float, burst_events: int, users: int) -> dict[str, Any]:
    ns = Namespace(Settings())
    await ns.setup([BENCH_JOURNEY, TIMER_JOURNEY])
    ns.start("worker")
    try:
        await asyncio.sleep(8)  # the worker joins its group and loads the journeys
        first_due = datetime.now(UTC) + timedelta(seconds=LEAD_SECONDS)
        await store_waiting_users(ns.settings, timers, rate, first_due)
        burst = events("ping", burst_events, users)
        started = time.monotonic()
        await publish(ns.settings, burst)
        publishing = time.monotonic() - started
        async with asyncio.timeout(600):
            while True:
                await asyncio.sleep(1)
                metrics = await ns.worker_metrics()
                if metrics.get("timer_lateness_samples", 0) >= timers:
                    break
        await asyncio.sleep(6)  # the last counters (published every 5 s)
        metrics = await ns.worker_metrics()
        percentiles = metrics["timer_lateness_percentiles"]
        published = await pump_lateness(ns.settings)
        return {
            "timers": timers,
            "timer_rate_per_s": rate,
            "burst_events": burst_events,
            "burst_published_s": round(publishing, 2),
            "inputs_applied": metrics["inputs"],
            "timers_applied": metrics["timer_lateness_samples"],
            "timer_lateness_p50_s": round(metrics["timer_lateness_p50"], 3),
            "timer_lateness_p90_s": round(percentiles[90], 3),
            "timer_lateness_p99_s": round(metrics["timer_lateness_p99"], 3),
            "timer_lateness_max_s": round(percentiles[100], 3),
            "timer_records": len(published),
            "pump_lateness_p50_s": round(quantile(published, 0.5), 3),
            "pump_lateness_p99_s": round(quantile(published, 0.99), 3),
        }
    finally:
        await ns.close()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timers", type=int, default=2_000)
    parser.add_argument("--rate", type=float, default=100.0, help="timers coming due per second")
    parser.add_argument("--events", type=int, default=20_000, help="events in the burst")
    parser.add_argument("--users", type=int, default=10_000, help="users the burst is over")
    args = parser.parse_args()
    result = asyncio.run(measure(args.timers, args.rate, args.events, args.users))
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    cli()
