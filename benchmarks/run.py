"""One command for Journeys' figures: the raw ceilings of the servers beneath it and the pipeline
measured in the same run, with ratios against those ceilings.

    scripts/bench [--quick]

Prints a table and writes benchmarks/results/latest.json."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import platform
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer

from app.config import Settings
from app.dispatch.record import DispatchRecord, MessageStep, Recipient
from app.sender.stub import ProviderStub, serve
from app.store.journeys import JourneyRegistry
from app.store.mongo import close_client, new_client
from app.streams.producer import new_producer
from app.topic_admin import apply_topics
from app.worker.metrics import METRICS_KEY
from benchmarks.ceilings import (
    kafka_produce_consume,
    mongo_bulk_cas,
    mongo_find_one_and_update,
    redis_set_nx,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "latest.json"
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
SIZES = {
    "quick": {"kafka": 20_000, "fou": 300, "cas": 1_000, "redis": 50_000, "users": 300,
              "events": 1_500, "timers": 300, "recipients": 2_000},
    "full": {"kafka": 200_000, "fou": 2_000, "cas": 5_000, "redis": 500_000, "users": 2_000,
             "events": 10_000, "timers": 2_000, "recipients": 20_000},
}  # fmt: skip


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
            "BATCHER_INTERVAL": "0.05",
            "TIMER_PUMP_INTERVAL": "0.05",
            "JOURNEYS_POLL_INTERVAL": "0.5",
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

    async def worker_metrics(self) -> dict[str, float]:
        client = aioredis.from_url(self.settings.redis_url)
        try:
            snapshots = await client.hgetall(f"{self.settings.redis_prefix}:{METRICS_KEY}")
        finally:
            await client.aclose()
        totals: dict[str, float] = {}
        for snapshot in snapshots.values():
            for name, value in orjson.loads(snapshot).items():
                totals[name] = (
                    max(totals.get(name, 0), value)
                    if "lateness" in name
                    else totals.get(name, 0) + value
                )
        return totals

    async def close(self) -> None:
        for process in self.processes:
            process.terminate()
            process.wait(30)
        client = new_client(self.settings)
        await client.drop_database(self.settings.mongo_db)
        await close_client(client)


async def read_recipients(
    settings: Settings, count: int, timeout: float
) -> tuple[list[dict], list[float], int]:
    """Reads `send` until `count` recipients came: (recipients, arrival times, record count)."""
    consumer = AIOKafkaConsumer(
        settings.topic("send"),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    recipients: list[dict] = []
    arrivals: list[float] = []
    records = 0
    try:
        async with asyncio.timeout(timeout):
            while len(recipients) < count:
                batch = await consumer.getmany(timeout_ms=200)
                now = time.time()
                for messages in batch.values():
                    for message in messages:
                        record = orjson.loads(message.value)
                        records += 1
                        for recipient in record["recipients"]:
                            recipients.append({**recipient, "send_at": record["send_at"]})
                            arrivals.append(now)
    finally:
        await consumer.stop()
    return recipients, arrivals, records


def events(name: str, count: int, users: int, spacing: float = 0.0) -> list[dict]:
    start = datetime.now(UTC)
    return [
        {
            "event_id": f"{name}-{i}",
            "user_id": f"user-{i % users:06d}",
            "name": name,
            "at": datetime.fromtimestamp(start.timestamp() + i * spacing, UTC).isoformat(),
            "attributes": {
                "email": f"u{i % users}@x.test",
                "push_token": f"tok-{i % users}",
                "first_name": "Bench",
            },
        }
        for i in range(count)
    ]


async def publish(settings: Settings, items: list[dict], rate: float | None = None) -> None:
    producer = new_producer(settings)
    await producer.start()
    try:
        started = time.monotonic()
        futures = []
        for i, item in enumerate(items):
            if rate:
                await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
                item = {**item, "at": datetime.now(UTC).isoformat()}
            futures.append(
                await producer.send(
                    settings.topic("user-events"), orjson.dumps(item), key=item["user_id"].encode()
                )
            )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def pipeline(settings: Settings, size: dict[str, int]) -> dict[str, Any]:
    ns = Namespace(settings)
    await ns.setup([BENCH_JOURNEY, TIMER_JOURNEY])
    worker = ns.start("worker")
    try:
        await asyncio.sleep(8)  # the worker joins its group and loads the journeys
        burst = events("ping", size["events"], size["users"])
        started = time.monotonic()
        await publish(ns.settings, burst)
        recipients, _, records = await read_recipients(ns.settings, len(burst), timeout=600)
        elapsed = time.monotonic() - started
        rate = len(burst) / elapsed

        paced = events("ping", max(200, size["events"] // 5), size["users"])
        paced = [{**e, "event_id": "paced-" + e["event_id"]} for e in paced]
        await publish(ns.settings, paced, rate=rate / 2)
        all_recipients, arrivals, _ = await read_recipients(
            ns.settings, len(burst) + len(paced), timeout=600
        )
        latencies = [
            arrival - datetime.fromisoformat(r["send_at"]).timestamp()
            for r, arrival in zip(all_recipients, arrivals, strict=True)
            if r["dispatch_id"] not in {x["dispatch_id"] for x in recipients}
        ]

        await publish(ns.settings, events("tick", size["timers"], size["timers"]))
        await read_recipients(ns.settings, len(burst) + len(paced) + size["timers"], timeout=600)
        await asyncio.sleep(6)  # the worker publishes its counters every 5 s
        metrics = await ns.worker_metrics()
        rss_kb = int(
            next(
                line
                for line in Path(f"/proc/{worker.pid}/status").read_text().splitlines()
                if line.startswith("VmHWM")
            ).split()[1]
        )
        return {
            "pipeline_events_per_s": rate,
            "pipeline_events": len(burst),
            "pipeline_users": size["users"],
            "mongo_writes_per_input": metrics["state_writes"] / metrics["inputs"],
            "dispatch_records_per_1m_sends": records / len(recipients) * 1_000_000,
            "e2e_latency_p50_s": quantile(latencies, 0.5),
            "e2e_latency_p99_s": quantile(latencies, 0.99),
            "timer_lateness_p50_s": metrics["timer_lateness_p50"],
            "timer_lateness_p99_s": metrics["timer_lateness_p99"],
            "pending_timers": size["timers"],
            "worker_peak_rss_mb": rss_kb / 1024,
        }
    finally:
        await ns.close()


async def sender(settings: Settings, recipients: int) -> dict[str, Any]:
    ns = Namespace(settings)
    await ns.setup([])
    stub = ProviderStub()
    runner = await serve(stub, "127.0.0.1", 0)
    port = runner.addresses[0][1]
    step = MessageStep("bench", 1, "hello", "email", "welcome")
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
        ns.start(
            "sender",
            EMAIL_API_URL=f"http://127.0.0.1:{port}/email",
            SENDER_RATE="100000",
            SENDER_CONCURRENCY="50",
        )
        async with asyncio.timeout(600):
            while len(stub.delivered) < recipients:
                await asyncio.sleep(0.05)
        return {
            "sender_deliveries_per_s": recipients / (time.monotonic() - started),
            "sender_recipients": recipients,
        }
    finally:
        await runner.cleanup()
        await ns.close()


async def main(mode: str) -> dict[str, Any]:
    settings = Settings()
    size = SIZES[mode]
    ceilings = [
        await kafka_produce_consume(settings, size["kafka"]),
        await mongo_find_one_and_update(settings, size["fou"]),
        await mongo_find_one_and_update(
            dataclasses.replace(settings, mongo_driver="pymongo"), size["fou"]
        ),
        await mongo_bulk_cas(settings, size["cas"]),
        await mongo_bulk_cas(dataclasses.replace(settings, mongo_driver="pymongo"), size["cas"]),
        await redis_set_nx(settings, size["redis"]),
    ]
    results: dict[str, Any] = {f"{c.name}_per_s": c.per_second for c in ceilings}
    results["store_bulk_cas_per_s"] = results["mongo_bulk_cas_motor_per_s"]
    results.update(await pipeline(settings, size))
    results.update(await sender(settings, size["recipients"]))
    rate = results["pipeline_events_per_s"]
    results["ratio_pipeline_to_store"] = rate / results["store_bulk_cas_per_s"]
    results["ratio_pipeline_to_kafka"] = rate / results["kafka_produce_consume_per_s"]
    results["ratio_pipeline_to_redis"] = rate / results["redis_set_nx_per_s"]
    results["mode"] = mode
    results["machine"] = (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    results["mongo_url"] = settings.mongo_url
    results["at"] = datetime.now(UTC).isoformat()
    return results


def table(results: dict[str, Any]) -> str:
    width = max(len(k) for k in results)
    lines = []
    for key, value in results.items():
        shown = f"{value:,.3f}" if isinstance(value, float) else str(value)
        lines.append(f"{key:<{width}}  {shown}")
    return "\n".join(lines)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the few-minutes size")
    args = parser.parse_args()
    results = asyncio.run(main("quick" if args.quick else "full"))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    print(table(results))
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    cli()
