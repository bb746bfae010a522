"""Several workers: how long a crashed worker's partitions wait, and what more workers buy.

    scripts/bench --scale [--quick]

Takeover: two workers in one group apply timers coming due at a steady rate; midway one is
killed with SIGKILL (no leave-group, so the broker waits the session timeout before it moves the
dead worker's partitions). Takeover time is from the kill to the first timer the timer pump
publishes again on every `timers` partition (the largest over partitions: the dead worker's
partitions are the ones that wait). Lateness is from each timer's due time to a worker applying it,
over every timer of the phase (the workers' own metrics, merged; the killed worker's last snapshot
is up to 5 s old, so the timers it applied on time just before the kill are left out, which if
anything makes the figures worse). Each session timeout given is tried in turn.

Scaling: the same burst of events over fresh users through 1, 2 and 4 workers on the same store,
each against the store's bulk-CAS ceiling on that run's users collection, with the CPU each
process used during the burst (from /proc/<pid>/stat), which shows whether the workers or the
store are the limit on this machine.

Writes benchmarks/results/scale.json."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from app.config import Settings
from app.topics import load_contract
from benchmarks.machine import CpuMeter, provenance, server_pids
from benchmarks.run import (
    BENCH_JOURNEY,
    RESULTS_DIR,
    ROOT,
    TIMER_JOURNEY,
    Namespace,
    events,
    publish,
    read_recipients,
    store_ceilings,
)

RESULTS = RESULTS_DIR / "scale.json"
SIZES = {
    "default": {"timer_rate": 50, "crash_phase_s": 60, "session_timeouts": (10.0, 3.0),
                "users": 2_000, "events": 4_000, "cas": 1_000, "workers": (1, 2, 4)},
    "quick": {"timer_rate": 50, "crash_phase_s": 40, "session_timeouts": (10.0,),
              "users": 1_000, "events": 2_000, "cas": 500, "workers": (1, 2, 4)},
}  # fmt: skip
WARM_USERS = 64  # enough users to have events on every partition
LATENESS_TARGET_S = 5.0


def weighted_quantile(points: Sequence[tuple[float, float]], q: float) -> float:
    """The value below which a share `q` of the weight lies."""
    ordered = sorted(points)
    total = sum(weight for _, weight in ordered)
    seen = 0.0
    for value, weight in ordered:
        seen += weight
        if seen >= q * total:
            return value
    return ordered[-1][0] if ordered else 0.0


def merged_lateness(snapshots: Sequence[dict[str, Any]]) -> dict[str, float]:
    """One lateness distribution from several workers' percentiles, each weighted by how many
    timers that worker applied (a percentile stands for a hundredth of its worker's samples)."""
    points = [
        (value, snapshot["timer_lateness_samples"] / 100)
        for snapshot in snapshots
        for value in snapshot["timer_lateness_percentiles"][1:]
    ]
    return {
        "timers_applied": sum(s["timer_lateness_samples"] for s in snapshots),
        "p50": weighted_quantile(points, 0.5),
        "p99": weighted_quantile(points, 0.99),
        "max": max((s["timer_lateness_percentiles"][-1] for s in snapshots), default=0.0),
    }


def takeover_seconds(published: Sequence[tuple[int, float]], killed_at: float) -> float:
    """From the kill to the first timer published after it on every partition, the largest over
    the partitions that had timers before the kill: (partition, Unix time) pairs."""
    before = {partition for partition, at in published if at <= killed_at}
    first_after: dict[int, float] = {}
    for partition, at in sorted(published, key=lambda pair: pair[1]):
        if at > killed_at:
            first_after.setdefault(partition, at)
    missing = before - set(first_after)
    if missing:
        raise RuntimeError(f"timers partitions {sorted(missing)} never resumed after the kill")
    return max(first_after[partition] - killed_at for partition in before)


async def group_members(settings: Settings, group: str) -> tuple[str, int]:
    """The consumer group's state and number of members, as the broker describes them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    _, _, state, _, _, members, *_ = response.groups[0]
    return state, len(members)


async def until_stable(ns: Namespace, workers: int, timeout: float = 240) -> None:
    """Waits until the workers' group is stable with `workers` members."""
    async with asyncio.timeout(timeout):
        while await group_members(ns.settings, ns.env["WORKER_APP_ID"]) != ("Stable", workers):
            await asyncio.sleep(0.5)


async def started_workers(ns: Namespace, workers: int, **env: str) -> list[int]:
    """Starts `workers` workers in one group and returns their PIDs once the group is stable and
    each applies events (a warm-up over every partition came through)."""
    pids = [ns.start("worker", **env).pid for _ in range(workers)]
    await until_stable(ns, workers)
    warm = events("ping", WARM_USERS, WARM_USERS, prefix=f"warm{workers}")
    await publish(ns.settings, warm)
    await read_recipients(ns.settings, len(warm), timeout=300)
    await until_stable(ns, workers)
    return pids


class TimerRecords:
    """Reads `timers` from its end in the background: (partition, publish time) per record."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.published: list[tuple[int, float]] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap)
        await consumer.start()
        topic = self.settings.topic("timers")
        partitions = [TopicPartition(topic, p) for p in range(load_contract("timers").partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for partition in partitions:
            await consumer.position(partition)
        self._task = asyncio.create_task(self._read(consumer))

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=100)
                for tp, messages in batch.items():
                    self.published += [(tp.partition, m.timestamp / 1000) for m in messages]
        finally:
            await consumer.stop()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def crash(settings: Settings, size: dict[str, Any], session_timeout: float) -> dict[str, Any]:
    """Two workers, timers due at a steady rate, one worker killed midway."""
    ns = Namespace(settings)
    await ns.setup([BENCH_JOURNEY, TIMER_JOURNEY])
    env = {"WORKER_SESSION_TIMEOUT": str(session_timeout)}
    records = TimerRecords(ns.settings)
    try:
        victim, _ = await started_workers(ns, 2, **env)
        count = size["timer_rate"] * size["crash_phase_s"]
        ticks = events("tick", count, count, prefix="crash")
        reading_from = asyncio.Event()
        reading = asyncio.create_task(
            read_recipients(ns.settings, len(ticks), timeout=600, started=reading_from)
        )
        await reading_from.wait()
        await records.start()
        ticking = asyncio.create_task(publish(ns.settings, ticks, rate=size["timer_rate"]))
        await asyncio.sleep(size["crash_phase_s"] / 2)
        os.kill(victim, signal.SIGKILL)
        killed_at = time.time()
        await ticking
        await reading
        await asyncio.sleep(6)  # the survivor publishes its metrics every 5 s
        await records.stop()
        lateness = merged_lateness(await ns.worker_snapshots())
        return {
            "session_timeout_s": session_timeout,
            "timers": len(ticks),
            "timer_rate_per_s": size["timer_rate"],
            "takeover_s": takeover_seconds(records.published, killed_at),
            "timer_lateness_p50_s": lateness["p50"],
            "timer_lateness_p99_s": lateness["p99"],
            "timer_lateness_max_s": lateness["max"],
            "timers_applied": lateness["timers_applied"],
            "lateness_target_met": lateness["p99"] < LATENESS_TARGET_S,
        }
    finally:
        await records.stop()
        await ns.close()


async def burst(settings: Settings, size: dict[str, Any], workers: int) -> dict[str, Any]:
    """The same burst through `workers` workers: events/s, the store ceiling after it, and the
    cores each process used during it."""
    ns = Namespace(settings)
    await ns.setup([BENCH_JOURNEY])
    try:
        workers_started = await started_workers(ns, workers)
        pids = {f"worker-{i + 1}": (pid,) for i, pid in enumerate(workers_started)}
        pids |= server_pids(ns.settings)
        pids["benchmark"] = (os.getpid(),)
        load = events("ping", size["events"], size["users"])
        cpu = CpuMeter(pids)
        cpu.start()
        started = time.monotonic()
        await publish(ns.settings, load)
        await read_recipients(ns.settings, WARM_USERS + len(load), timeout=1800)
        elapsed = time.monotonic() - started
        cores = {name: used / elapsed for name, used in cpu.stop().items()}
        rate = len(load) / elapsed
        ceiling = await store_ceilings(ns.settings, {**size, "timers": 0})
        worker_cores = sum(v for k, v in cores.items() if k.startswith("worker-"))
        return {
            "workers": workers,
            "events": len(load),
            "users": size["users"],
            "events_per_s": rate,
            "store_bulk_cas_per_s": ceiling["store_bulk_cas_per_s"],
            "ratio_to_store": rate / ceiling["store_bulk_cas_per_s"],
            "cores": {**cores, "workers": worker_cores, "all": sum(cores.values())},
        }
    finally:
        await ns.close()


async def run(mode: str) -> dict[str, Any]:
    settings = Settings()
    size = SIZES[mode]
    about = provenance(ROOT)
    started = time.monotonic()
    crashes = []
    for session_timeout in size["session_timeouts"]:
        crashes.append(await crash(settings, size, session_timeout))
        print(f"scale: crash with session timeout {session_timeout:g} s: {crashes[-1]}", flush=True)
    scaling = []
    for workers in size["workers"]:
        scaling.append(await burst(settings, size, workers))
        print(f"scale: {workers} workers: {scaling[-1]}", flush=True)
    return {
        "mode": mode,
        "crash": crashes,
        "scaling": scaling,
        "duration_s": time.monotonic() - started,
        **about,
        "mongo_url": settings.mongo_url,
        "at": datetime.now(UTC).isoformat(),
    }
