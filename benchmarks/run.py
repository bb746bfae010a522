"""One command for Journeys' figures: the raw ceilings of the servers beneath it and the pipeline
measured in the same run, with ratios against those ceilings, the targets met or not, and the
fault suite at a larger size than in CI.

    scripts/bench [--quick | --medium]
    scripts/bench --differential N [--seed S]
    scripts/bench --scale [--quick]

Prints a table and writes benchmarks/results/latest.json, and MODE.json, e2e-latency-MODE.png and
timer-lateness-MODE.png for MODE quick, medium or full. `--differential` instead runs N generated
cases through the live pipeline against the simulator (benchmarks/differential.py); `--scale`
the takeover after a worker crash and the pipeline with 1, 2 and 4 workers (benchmarks/scale.py)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import os
import re
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from app.config import Settings, WorkerSettings
from app.dispatch.record import DispatchRecord, DispatchStep, Recipient
from app.engine import Analytics, JourneyEngine, UserEvent, UserState, load_journey_text
from app.engine.figures import increments
from app.keyspace import Keyspace
from app.redis_client import new_redis
from app.sender.stub import ProviderStub, serve
from app.store.figures import JourneyFigures
from app.store.journeys import JourneyRegistry
from app.store.mongo import close_client, new_client
from app.store.users import StoredUser, UserCommit, UserStore
from app.streams.producer import new_producer
from app.topic_admin import apply_topics
from app.topics import load_contract
from app.worker.branch_lock import BranchLock
from app.worker.due_index import DueIndex
from app.worker.metrics import STAGE_BUCKETS, STAGES, histogram_quantile
from app.worker.partitions import partition_of
from app.worker.processor import EMITTED
from app.worker.redis_recovery import RedisRecovery
from app.worker.send_buffer import SendBuffer
from benchmarks import differential
from benchmarks.ceilings import (
    bulk_cas_seconds,
    kafka_produce_consume,
    mongo_bulk_cas,
    mongo_find_one_and_update,
    mongo_read_and_cas,
    read_and_cas_seconds,
    redis_set_nx,
)
from benchmarks.flow_page import flow_page_latency
from benchmarks.machine import (
    CpuMeter,
    WalPeak,
    database_size,
    provenance,
    server_pids,
)
from benchmarks.plots import latency_plot, percentile_plot
from benchmarks.report import differential_figure, scale_tables

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
RESULTS = RESULTS_DIR / "latest.json"
JOURNEYS = str(Path(sys.executable).parent / "journeys")
BENCH_JOURNEY = """
id: bench
version: 1
entry: {event: ping}
re_entry: every_time
steps:
  hello: {type: message, channel: email, template: welcome}
"""
TIMER_JOURNEY = """
id: bench-timers
version: 1
entry: {event: tick}
re_entry: every_time
steps:
  wait: {type: delay, duration: 3s, next: hello}
  hello: {type: message, channel: push, template: add_class_reminder}
"""
# Users parked on a 30-day delay: the pending timers the timer pump works among.
PARKED_JOURNEY = """
id: bench-parked
version: 1
entry: {event: park}
steps:
  wait: {type: delay, duration: 30d, next: hello}
  hello: {type: message, channel: push, template: add_class_reminder}
"""
SIZES = {
    "quick": {"kafka": 20_000, "fou": 300, "cas": 1_000, "redis": 50_000,
              "warm_users": 200, "warm_events": 4_000, "users": 2_000, "events": 4_000,
              "timers": 400, "pending_timers": 20_000, "recipients": 2_000,
              "fault_wave_users": 40},
    "medium": {"kafka": 100_000, "fou": 1_000, "cas": 3_000, "redis": 200_000,
               "warm_users": 2_000, "warm_events": 20_000, "users": 20_000, "events": 100_000,
               "timers": 1_000, "pending_timers": 200_000, "recipients": 10_000,
               "fault_wave_users": 100},
    "full": {"kafka": 200_000, "fou": 2_000, "cas": 5_000, "redis": 500_000,
             "warm_users": 10_000, "warm_events": 100_000, "users": 100_000, "events": 1_000_000,
             "timers": 2_000, "pending_timers": 1_000_000, "recipients": 20_000,
             "fault_wave_users": 200},
}  # fmt: skip
PACED_EVENTS = 20_000
# What the benchmark's workers are given besides their namespace (the result records it all).
WORKER_ENV = {
    "BATCHER_INTERVAL": "0.05",
    "TIMER_PUMP_INTERVAL": "0.05",
    "JOURNEYS_POLL_INTERVAL": "0.5",
}
SENDER_ENV = {"SENDER_RATE": "100000", "SENDER_CONCURRENCY": "50"}
METRICS_PUBLISHED_S = 6  # the worker publishes its metrics every 5 s
# (figure, comparison, bound, what the target says)
TARGETS = (
    ("ratio_pipeline_to_store", ">=", 0.70, "pipeline >= 70% of the store's bulk CAS ceiling"),
    ("mongo_writes_per_user_batch", "<=", 1.0, "at most one Mongo write per user per batch"),
    ("dispatch_records_per_1m_sends", "<=", 5_000, "1M sends in at most 5,000 dispatch records"),
    ("timer_lateness_p99_s", "<=", 1.0, "timer lateness p99 <= 1 s among the pending timers"),
    ("e2e_latency_p99_s", "<=", 0.5, "event to dispatch p99 <= 0.5 s at half the rate"),
    ("cpu_ms_per_event_worker", "<=", 0.30, "worker CPU <= 0.30 ms per event"),
    ("worker_rss_growth_ratio", "<=", 1.25, "worker memory flat in the number of users"),
    ("flow_page_p50_s", "<=", 0.1, "flow page p50 <= 100 ms at the run's users"),
)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


class Namespace:
    """Topics, database, Redis keys and groups of one benchmark run, with a worker process."""

    def __init__(self, settings: Settings) -> None:
        run = uuid.uuid4().hex[:8]
        self.settings = dataclasses.replace(
            settings,
            topic_prefix=f"bench-{run}-",
            mongo_db=f"bench_{run}",
            redis_prefix=f"bench-{run}",
        )
        self.env = {
            **os.environ,
            "TOPIC_PREFIX": self.settings.topic_prefix,
            "MONGO_DB": self.settings.mongo_db,
            "REDIS_PREFIX": self.settings.redis_prefix,
            "WORKER_APP_ID": f"bench-worker-{run}",
            "SENDER_GROUP_ID": f"bench-sender-{run}",
            **WORKER_ENV,
        }
        self.processes: list[subprocess.Popen[bytes]] = []

    async def setup(self, journeys: list[str]) -> None:
        await apply_topics(self.settings)
        client = new_client(self.settings)
        registry = JourneyRegistry(client[self.settings.mongo_db])
        for text in journeys:
            await registry.deploy(text, "benchmark")
        await close_client(client)

    def start(self, service: str, **env: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [JOURNEYS, service, "--loglevel", "error"],
            env={**self.env, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.processes.append(process)
        return process

    async def worker_snapshots(self) -> list[dict[str, Any]]:
        """Each worker's latest metrics snapshot, from every shard of the metrics hashes."""
        client = new_redis(self.settings)
        try:
            shards = Keyspace(self.settings.redis_prefix).worker_metrics_shards()
            hashes = [await client.hgetall(shard) for shard in shards]
        finally:
            await client.aclose()
        return [orjson.loads(snapshot) for shard in hashes for snapshot in shard.values()]

    async def worker_metrics(self) -> dict[str, float]:
        totals: dict[str, Any] = {}
        for snapshot in await self.worker_snapshots():
            for name, value in snapshot.items():
                if isinstance(value, dict):
                    continue  # the stage histograms: stage_counts
                if isinstance(value, list):
                    totals[name] = value  # one worker here: its distribution as it is
                    continue
                totals[name] = (
                    max(totals.get(name, 0), value)
                    if "lateness" in name
                    else totals.get(name, 0) + value
                )
        return totals

    async def stage_counts(self) -> dict[str, list[int]]:
        """The workers' stage histograms (app/worker/metrics.py), summed over the workers."""
        totals = {stage: [0] * STAGE_BUCKETS for stage in STAGES}
        for snapshot in await self.worker_snapshots():
            for stage, counts in snapshot.get("stage_histograms", {}).items():
                totals[stage] = [a + b for a, b in zip(totals[stage], counts, strict=True)]
        return totals

    async def close(self) -> None:
        for process in self.processes:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        client = new_client(self.settings)
        try:
            await client.drop_database(self.settings.mongo_db)
        finally:
            await close_client(client)


async def read_recipients(
    settings: Settings, count: int, timeout: float, started: asyncio.Event | None = None
) -> tuple[list[dict], list[float], int]:
    """Reads `send` until `count` recipients came: (recipients, arrival times, record count);
    each recipient with its record's `send_at` and `produced_at` (its Kafka timestamp, Unix
    time). With `started`, reads only what comes after it is set (so arrival times are true)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    recipients: list[dict] = []
    arrivals: list[float] = []
    records = 0
    try:
        topic = settings.topic("send")
        partitions = [TopicPartition(topic, p) for p in range(load_contract("send").partitions)]
        consumer.assign(partitions)
        if started is not None:
            await consumer.seek_to_end(*partitions)
            for partition in partitions:
                await consumer.position(partition)
            started.set()
        async with asyncio.timeout(timeout):
            while len(recipients) < count:
                batch = await consumer.getmany(timeout_ms=100)
                now = time.time()
                for messages in batch.values():
                    for message in messages:
                        record = orjson.loads(message.value)
                        records += 1
                        produced_at = message.timestamp / 1000
                        for recipient in record["recipients"]:
                            recipients.append(
                                {
                                    **recipient,
                                    "send_at": record["send_at"],
                                    "produced_at": produced_at,
                                }
                            )
                            arrivals.append(now)
    finally:
        await consumer.stop()
    return recipients, arrivals, records


def events(name: str, count: int, users: int, prefix: str = "") -> list[dict]:
    """`count` events named `name`, spread over `users` users (ids shared across calls)."""
    at = datetime.now(UTC).isoformat()
    return [
        {
            "event_id": f"{prefix}{name}-{i}",
            "user_id": f"{prefix}user-{i % users:07d}",
            "name": name,
            "at": at,
            "attributes": {
                "email": f"u{i % users}@x.test",
                "push_token": f"tok-{i % users}",
                "first_name": "Bench",
            },
        }
        for i in range(count)
    ]


async def publish(
    settings: Settings, items: list[dict], rate: float | None = None
) -> dict[str, float]:
    """Publishes the events, at `rate` per second if given (each stamped as it goes out);
    returns when each user's last event went out, as a Unix time."""
    producer = new_producer(settings)
    await producer.start()
    sent_at: dict[str, float] = {}
    try:
        started = time.monotonic()
        futures = []
        for i, item in enumerate(items):
            if rate:
                await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
                item = {**item, "at": datetime.now(UTC).isoformat()}
            sent_at[item["user_id"]] = time.time()
            futures.append(
                await producer.send(
                    settings.topic("user-events"), orjson.dumps(item), key=item["user_id"].encode()
                )
            )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return sent_at


async def park_users(settings: Settings, count: int, chunk: int = 1_000) -> None:
    """Stores `count` users waiting on a 30-day timer, as a worker would have left them: user
    documents, due index entries, Redis marked as holding them (so no refill is due), and the
    journey's figures (entered, waiting) as the timeline projector would have counted them."""
    engine = JourneyEngine([load_journey_text(PARKED_JOURNEY)])
    partitions = load_contract("timers").partitions
    now = datetime.now(UTC)
    client = new_client(settings)
    database = client[settings.mongo_db]
    redis = new_redis(settings)
    prefix = settings.redis_prefix
    store = UserStore(database, settings.mongo_bulk_ops)
    figures = JourneyFigures(database)
    due_index = DueIndex(redis, prefix)
    lock = BranchLock(redis, prefix, WorkerSettings().branch_lock_ttl_seconds)
    recovery = RedisRecovery(
        redis, prefix, lock, SendBuffer(redis, prefix), database, due_index, store
    )
    try:
        await recovery.check(now)  # an empty store: sets the epoch, puts nothing back
        for first in range(0, count, chunk):
            commits, analytics = [], []
            for i in range(first, min(count, first + chunk)):
                user_id = f"parked-{i:07d}"
                park = UserEvent(event_id=f"park-{i}", user_id=user_id, name="park", at=now)
                transition = engine.apply(UserState.new(user_id), park, now)
                stored = StoredUser(user_id=user_id, state=transition.state)
                commits.append(UserCommit(stored, 0, partition_of(user_id, partitions)))
                analytics += [e.to_record() for e in transition.effects if isinstance(e, Analytics)]
            await store.collection.insert_many([c.document() for c in commits], ordered=False)
            await figures.increment(increments(analytics), "benchmark", "parked")
            await due_index.record(
                (c.user.user_id, c.partition, c.user.state.next_due_at()) for c in commits
            )
    finally:
        await redis.aclose()
        await close_client(client)


def typical_user_document(size: dict[str, int]) -> dict[str, Any]:
    """The average user document the burst writes: each user's document is written after each
    of its events, so on average after half of them (documents grow with a user's sends)."""
    pings = math.ceil((size["events"] // size["users"] + 1) / 2)
    engine = JourneyEngine([load_journey_text(BENCH_JOURNEY)])
    now = datetime.now(UTC)
    stored = StoredUser.new("user-0000000")
    for ping in events("ping", pings, 1):
        transition = engine.apply(stored.state, UserEvent.from_record(ping), now)
        stored.state = transition.state
        stored.outbox = [e.to_record() for e in transition.effects if isinstance(e, EMITTED)]
    return UserCommit(stored, 0, 0).document()


def rss_mb(process: subprocess.Popen[bytes], field: str) -> float:
    status = Path(f"/proc/{process.pid}/status").read_text().splitlines()
    return int(next(line for line in status if line.startswith(field)).split()[1]) / 1024


async def pipeline(settings: Settings, size: dict[str, int], mode: str) -> dict[str, Any]:
    ns = Namespace(settings)
    await ns.setup([BENCH_JOURNEY, TIMER_JOURNEY, PARKED_JOURNEY])
    await park_users(ns.settings, size["pending_timers"])
    worker = ns.start("worker")
    servers = server_pids(ns.settings)
    wal = WalPeak.of(servers.get("mongo", ()), ns.settings.mongo_db)
    watching = asyncio.create_task(wal.watch())
    try:
        await asyncio.sleep(8)  # the worker joins its group and loads the journeys
        # The same load over few users, then over many: memory flat in users means equal RSS.
        warm = events("ping", size["warm_events"], size["warm_users"], prefix="warm")
        await publish(ns.settings, warm)
        await read_recipients(ns.settings, len(warm), timeout=3600)
        rss_warm = rss_mb(worker, "VmRSS")

        burst = events("ping", size["events"], size["users"])
        cpu = CpuMeter({**servers, "worker": (worker.pid,), "benchmark": (os.getpid(),)})
        cpu.start()
        started = time.monotonic()
        await publish(ns.settings, burst)
        await read_recipients(ns.settings, len(warm) + len(burst), timeout=3600)
        elapsed = time.monotonic() - started
        cpu_used = cpu.stop()
        rate = len(burst) / elapsed
        rss_loaded = rss_mb(worker, "VmRSS")
        store = await store_ceilings(ns.settings, size)

        # At half the maximum rate, reading as the records come: event to dispatch latency.
        # One event per user (a recipient names its event); 20,000 samples are plenty.
        paced = events("ping", min(size["users"], PACED_EVENTS), size["users"], prefix="paced")
        await asyncio.sleep(METRICS_PUBLISHED_S)
        stages_before = await ns.stage_counts()
        reading_from = asyncio.Event()
        reading = asyncio.create_task(
            read_recipients(ns.settings, len(paced), timeout=3600, started=reading_from)
        )
        await reading_from.wait()
        sent_at = await publish(ns.settings, paced, rate=rate / 2)
        arrived, arrivals, _ = await reading
        latencies = [
            arrival - sent_at[r["user_id"]] for r, arrival in zip(arrived, arrivals, strict=True)
        ]
        await asyncio.sleep(METRICS_PUBLISHED_S)
        stages = stage_latencies(
            stages_before,
            await ns.stage_counts(),
            [arrival - r["produced_at"] for r, arrival in zip(arrived, arrivals, strict=True)],
        )

        # Timers come due at a steady rate, as in production, not all in the same millisecond.
        await publish(ns.settings, events("tick", size["timers"], size["timers"]), rate=100)
        sends = len(warm) + len(burst) + len(paced) + size["timers"]
        everything, _, records = await read_recipients(ns.settings, sends, timeout=3600)
        await asyncio.sleep(6)  # the worker publishes its counters every 5 s
        metrics = await ns.worker_metrics()
        latency_plot(latencies, RESULTS_DIR / f"e2e-latency-{mode}.png", "event to dispatch record")
        percentile_plot(
            metrics["timer_lateness_percentiles"],
            RESULTS_DIR / f"timer-lateness-{mode}.png",
            f"timer lateness, {size['pending_timers']:,} other timers pending",
        )
        # The operator's view at the store's size now (1.1M users at the full size).
        page = await flow_page_latency(JOURNEYS, ns.env, ["bench", "bench-parked"])
        size_at_end = await database_size(ns.settings, servers.get("mongo", ()))
        return {
            **store,
            "pipeline_events_per_s": rate,
            **{
                f"cpu_ms_per_event_{name}": used * 1000 / len(burst)
                for name, used in cpu_used.items()
            },
            "pipeline_events": len(burst),
            "pipeline_users": size["users"],
            "mongo_writes_per_input": metrics["state_writes"] / metrics["inputs"],
            "mongo_writes_per_user_batch": metrics["state_writes"] / metrics["user_batches"],
            "dispatch_records_per_1m_sends": records / len(everything) * 1_000_000,
            "e2e_latency_p50_s": quantile(latencies, 0.5),
            "e2e_latency_p99_s": quantile(latencies, 0.99),
            "e2e_paced_events_per_s": rate / 2,
            "e2e_stages": stages,
            "timer_lateness_p50_s": metrics["timer_lateness_p50"],
            "timer_lateness_p99_s": metrics["timer_lateness_p99"],
            "pending_timers": size["pending_timers"],
            "worker_rss_after_warm_users_mb": rss_warm,
            "worker_rss_after_all_users_mb": rss_loaded,
            "worker_rss_growth_ratio": rss_loaded / rss_warm,
            "worker_peak_rss_mb": rss_mb(worker, "VmHWM"),
            **page,
            "flow_page_users": size["users"] + size["warm_users"] + size["pending_timers"],
            "flow_page_waiting_parked": page["flow_page_waiting"]["bench-parked"].get("wait", 0),
            "store_size_source": size_at_end["source"],
            "store_database_mb": size_at_end.get("database", 0) / 2**20,
            "store_wal_mb": size_at_end.get("wal", 0) / 2**20,
            "store_wal_peak_mb": wal.peak / 2**20,
        }
    finally:
        watching.cancel()
        await ns.close()


def stage_latencies(
    before: dict[str, list[int]], after: dict[str, list[int]], sent_to_read: list[float]
) -> dict[str, dict[str, float]]:
    """p50 and p99 per stage over one phase: the workers' stages from the difference of their
    histograms at its start and end, then the send topic to this benchmark's consumer."""
    stages: dict[str, dict[str, float]] = {}
    for stage in STAGES:
        counts = [b - a for a, b in zip(before[stage], after[stage], strict=True)]
        stages[stage] = {
            "p50_s": histogram_quantile(counts, 0.5),
            "p99_s": histogram_quantile(counts, 0.99),
            "samples": sum(counts),
        }
    stages["send_to_consumer"] = {
        "p50_s": quantile(sent_to_read, 0.5),
        "p99_s": quantile(sent_to_read, 0.99),
        "samples": len(sent_to_read),
    }
    return stages


async def store_ceilings(settings: Settings, size: dict[str, int]) -> dict[str, Any]:
    """The store's ceilings as the pipeline finds it: on the pipeline's own users collection
    right after the burst (a million documents at the full size), replacing the documents of
    burst users that no later phase uses. An empty store is faster than the one the pipeline
    works on."""
    assert size["cas"] + size["timers"] <= size["users"], "the ceiling would touch timer users"
    ids = [f"user-{i:07d}" for i in range(size["users"] - size["cas"], size["users"])]
    document = typical_user_document(size)
    client = new_client(settings)
    try:
        users = UserStore(client[settings.mongo_db], settings.mongo_bulk_ops).collection
        bulk_cas = await bulk_cas_seconds(users, ids, document)
        read_and_cas = await read_and_cas_seconds(users, ids, document)
        return {
            "store_bulk_cas_per_s": len(ids) / bulk_cas,
            "store_read_and_cas_per_s": len(ids) / read_and_cas,
            "store_users": await users.estimated_document_count(),
        }
    finally:
        await close_client(client)


async def sender(settings: Settings, recipients: int) -> dict[str, Any]:
    ns = Namespace(settings)
    await ns.setup([])
    stub = ProviderStub()
    runner = await serve(stub, "127.0.0.1", 0)
    port = runner.addresses[0][1]
    step = DispatchStep("bench", 1, "hello", "email", "welcome")
    records = [
        DispatchRecord(
            step,
            datetime.now(UTC),
            tuple(
                Recipient(f"u{i}", uuid.uuid4().hex, "en", {"first_name": "Bench"}, f"u{i}@x.test")
                for i in range(first, min(recipients, first + 200))
            ),
        )
        for first in range(0, recipients, 200)
    ]
    producer = new_producer(ns.settings)
    await producer.start()
    for record in records:
        await producer.send(
            ns.settings.topic("send"),
            orjson.dumps(record.to_record()),
            key=record.batch_id.encode(),
        )
    await producer.stop()
    try:
        started = time.monotonic()
        process = ns.start("sender", EMAIL_API_URL=f"http://127.0.0.1:{port}/email", **SENDER_ENV)
        servers = server_pids(ns.settings)
        cpu = CpuMeter({**servers, "sender": (process.pid,), "benchmark": (os.getpid(),)})
        cpu.start()
        async with asyncio.timeout(600):
            while len(stub.delivered) < recipients:
                await asyncio.sleep(0.05)
        cpu_used = cpu.stop()
        return {
            "sender_deliveries_per_s": recipients / (time.monotonic() - started),
            **{
                f"cpu_ms_per_delivery_{name}": used * 1000 / recipients
                for name, used in cpu_used.items()
            },
            "sender_recipients": recipients,
        }
    finally:
        await runner.cleanup()
        await ns.close()


def worker_settings(env: dict[str, str]) -> dict[str, Any]:
    """The worker's settings as a worker started with `env` reads them."""
    saved = os.environ.copy()
    os.environ.update(env)
    try:
        return dataclasses.asdict(WorkerSettings())
    finally:
        os.environ.clear()
        os.environ.update(saved)


async def main(mode: str) -> dict[str, Any]:
    settings = Settings()
    size = SIZES[mode]
    # At the start: the code the run measures.
    about = {
        **provenance(ROOT),
        "settings": {
            "worker": worker_settings(WORKER_ENV),
            "sender_env": SENDER_ENV,
            "mongo_driver": settings.mongo_driver,
            "mongo_bulk_ops": settings.mongo_bulk_ops,
        },
    }
    ceilings = [
        await kafka_produce_consume(settings, size["kafka"]),
        await mongo_find_one_and_update(settings, size["fou"]),
        await mongo_find_one_and_update(
            dataclasses.replace(settings, mongo_driver="pymongo"), size["fou"]
        ),
        await mongo_bulk_cas(settings, size["cas"], typical_user_document(size)),
        await mongo_bulk_cas(
            dataclasses.replace(settings, mongo_driver="pymongo"),
            size["cas"],
            typical_user_document(size),
        ),
        await mongo_read_and_cas(settings, size["cas"], typical_user_document(size)),
        await redis_set_nx(settings, size["redis"]),
    ]
    results: dict[str, Any] = {f"{c.name}_per_s": c.per_second for c in ceilings}
    results.update(await pipeline(settings, size, mode))
    results.update(await sender(settings, size["recipients"]))
    rate = results["pipeline_events_per_s"]
    results["ratio_pipeline_to_store"] = rate / results["store_bulk_cas_per_s"]
    results["ratio_pipeline_to_store_read_and_cas"] = rate / results["store_read_and_cas_per_s"]
    results["ratio_pipeline_to_kafka"] = rate / results["kafka_produce_consume_per_s"]
    results["ratio_pipeline_to_redis"] = rate / results["redis_set_nx_per_s"]
    results["targets"] = {
        name: {"target": f"{op} {bound:g}", "met": met(results[name], op, bound), "means": means}
        for name, op, bound, means in TARGETS
    }
    results["faults"] = fault_suite(size["fault_wave_users"])
    results["mode"] = mode
    results.update(about)
    results["mongo_url"] = settings.mongo_url
    results["at"] = datetime.now(UTC).isoformat()
    return results


def met(value: float, op: str, bound: float) -> bool:
    return value >= bound if op == ">=" else value <= bound


def fault_suite(wave_users: int) -> dict[str, Any]:
    """The fault-injection test at a larger size; its per-fault figures as it printed them."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "tests/faults"],
        cwd=ROOT,
        env={**os.environ, "FAULT_WAVE_USERS": str(wave_users)},
        capture_output=True,
        text=True,
    )
    figures: dict[str, Any] = {"passed": result.returncode == 0, "wave_users": wave_users}
    figures["by_redis"] = fault_figures(result.stdout)
    if result.returncode != 0:  # what went wrong, kept with the result (ids, steps, outcomes)
        figures["failure"] = [
            line for line in result.stdout.splitlines() if line.startswith(("E ", "FAILED"))
        ][-80:]
    return figures


def fault_figures(stdout: str) -> dict[str, dict[str, Any]]:
    """Each Redis kind's run, fault -> its figures, from the lines the fault suite printed.
    Searched, not matched at the line's start: pytest's `.` for the first test run precedes the
    second test's first line."""
    by_redis: dict[str, dict[str, Any]] = {}
    for line in stdout.splitlines():
        if match := re.search(r"fault suite \[(.+?)\]: (.+?): (\{.*\})$", line):
            by_redis.setdefault(match[1], {})[match[2]] = orjson.loads(match[3].replace("'", '"'))
    return by_redis


def table(results: dict[str, Any]) -> str:
    plain = {k: v for k, v in results.items() if not isinstance(v, dict)}
    width = max(len(k) for k in plain)
    lines = []
    for key, value in plain.items():
        shown = f"{value:,.3f}" if isinstance(value, float) else str(value)
        lines.append(f"{key:<{width}}  {shown}")
    lines.append("\ntargets")
    for name, target in results["targets"].items():
        verdict = "met" if target["met"] else "NOT MET"
        lines.append(
            f"  {target['means']:<52} {results[name]:>12,.3f} {target['target']:>10}  {verdict}"
        )
    stages = results["e2e_stages"]
    largest = max(stages, key=lambda stage: stages[stage]["p50_s"])
    lines.append("\nevent to dispatch by stage, paced phase: p50 / p99 per event")
    for stage, figures in stages.items():
        lines.append(
            f"  {stage:<18} {figures['p50_s']:>7.3f} s / {figures['p99_s']:>7.3f} s"
            f"  ({figures['samples']:,} samples)" + ("  <- largest p50" if stage == largest else "")
        )
    lines.append(
        f"  {'end to end':<18} {results['e2e_latency_p50_s']:>7.3f} s / "
        f"{results['e2e_latency_p99_s']:>7.3f} s"
    )
    settings = results["settings"]
    shown = {**settings["worker"], **settings["sender_env"]}
    shown |= {k: v for k, v in settings.items() if k not in ("worker", "sender_env")}
    lines.append(
        "\n"
        + textwrap.fill(
            "settings: " + ", ".join(f"{k} {v}" for k, v in shown.items()),
            100,
            subsequent_indent="  ",
        )
    )
    lines.append(f"\nfault suite ({results['faults']['wave_users']} users per wave)")
    for kind, faults in results["faults"]["by_redis"].items():
        for fault, figures in faults.items():
            shown = ", ".join(f"{k} {v}" for k, v in figures.items())
            lines.append(f"  {kind:<13} {fault:<30} {shown}")
    lines.append(f"  passed: {results['faults']['passed']}")
    return "\n".join(lines)


def run_differential(count: int, seed: int | None) -> None:
    about = provenance(ROOT)
    results = {**asyncio.run(differential.run(count, seed)), **about}
    differential.RESULTS.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"\n{differential_figure(results)}; written to {differential.RESULTS.relative_to(ROOT)}")
    if results["divergences"]:
        sys.exit(1)


def run_scale(mode: str) -> None:
    from benchmarks import scale  # it builds on this module

    results = asyncio.run(scale.run(mode))
    scale.RESULTS.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"\n{scale_tables(results)}\n\nwritten to {scale.RESULTS.relative_to(ROOT)}")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--quick", action="store_true", help="the few-minutes size")
    sizes.add_argument("--medium", action="store_true", help="a quarter-hour size")
    sizes.add_argument(
        "--differential",
        type=int,
        metavar="N",
        help="instead, N generated cases through the live pipeline against the simulator",
    )
    parser.add_argument(
        "--scale",
        action="store_true",
        help="instead, a worker crash's takeover and 1, 2 and 4 workers (with --quick: smaller)",
    )
    parser.add_argument(
        "--seed", type=int, help="the first case's seed for --differential (default: random)"
    )
    args = parser.parse_args()
    if args.seed is not None and args.differential is None:
        parser.error("--seed goes with --differential")
    if args.scale and (args.medium or args.differential is not None):
        parser.error("--scale goes with --quick only")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    if args.differential is not None:
        run_differential(args.differential, args.seed)
        return
    if args.scale:
        run_scale("quick" if args.quick else "default")
        return
    results = asyncio.run(main("quick" if args.quick else "medium" if args.medium else "full"))
    text = orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n"
    RESULTS.write_bytes(text)
    (RESULTS_DIR / f"{results['mode']}.json").write_bytes(text)  # the latest run of each size
    print(table(results))
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    cli()
