"""`GET /metrics`: the workers' and senders' latest snapshots in Redis, in the Prometheus text
format through the official client library, on a registry of its own (not the global one, which
would add this API process's own figures under the same names).

Every process's counters carry its id (`worker`, `sender`): Prometheus sums them with rate(), and
a process that dies leaves (its snapshot goes stale) without making a total drop. Nothing here
reads MongoDB: a scrape costs one Redis round trip whatever the number of deliveries."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app.keyspace import Keyspace
from app.metrics_snapshots import Snapshot, fresh_snapshots
from app.redis_client import RedisClient

# Snapshot field -> help text: each exported as journeys_<field>_total{worker}.
WORKER_COUNTERS = (
    ("inputs", "Inputs (events and timers) the worker applied."),
    ("transitions", "Engine transitions."),
    ("state_writes", "User state writes to MongoDB."),
    ("user_batches", "(user, micro-batch) pairs: at most one state write each."),
    ("dead_letters", "Records the worker sent to the dead-letter topic."),
    ("sends_buffered", "Sends put in the Redis send buffer."),
    ("timers_published", "Due timers published by the worker's timer pumps."),
    ("branch_refused", "Sends refused by the branch lock (another path won the entry)."),
    ("repartitioned", "user-events records re-produced to user-events-by-user."),
    ("miskeyed_records", "user-events records with no key or a key other than the user id."),
    ("applied_in_place", "user-events records applied on their user's partition, not copied."),
    ("versions_missing", "Users whose inputs first waited for a journey version not loaded."),
    ("inputs_parked", "Inputs parked in user documents until their journey version loads."),
)
LATENESS_QUANTILES = (0.5, 0.9, 0.99)


@dataclass(frozen=True)
class Snapshots:
    """The fresh snapshots, by process id."""

    workers: dict[str, Snapshot]
    senders: dict[str, Snapshot]


async def read_snapshots(redis: RedisClient, keys: Keyspace) -> Snapshots:
    now = time.time()
    return Snapshots(
        workers=await fresh_snapshots(redis, keys.worker_metrics_shards(), now),
        senders=await fresh_snapshots(redis, [keys.sender_metrics()], now),
    )


class JourneysCollector(Collector):
    """The metric families of one scrape's snapshots."""

    def __init__(self, snapshots: Snapshots) -> None:
        self.snapshots = snapshots

    def collect(self) -> Iterable[Metric]:
        yield from self._workers()
        yield from self._senders()

    def _workers(self) -> Iterable[Metric]:
        workers = sorted(self.snapshots.workers.items())
        yield GaugeMetricFamily(
            "journeys_workers", "Workers whose metrics snapshot is fresh.", len(workers)
        )
        for name, help_text in WORKER_COUNTERS:
            family = CounterMetricFamily(f"journeys_{name}", help_text, labels=["worker"])
            for worker, snapshot in workers:
                family.add_metric([worker], snapshot.get(name, 0))
            yield family
        inputs = sum(snapshot.get("inputs", 0) for _, snapshot in workers)
        writes = sum(snapshot.get("state_writes", 0) for _, snapshot in workers)
        yield GaugeMetricFamily(
            "journeys_mongo_writes_per_input",
            "User state writes per input since the workers started, over every fresh worker.",
            writes / inputs if inputs else 0.0,
        )
        lateness = Metric(
            "journeys_timer_lateness_seconds",
            "How late timers were applied (processed - due); quantiles over the recent ones.",
            "summary",
        )
        for worker, snapshot in workers:
            percentiles = snapshot.get("timer_lateness_percentiles") or [0.0] * 101
            for quantile in LATENESS_QUANTILES:
                labels = {"worker": worker, "quantile": str(quantile)}
                lateness.add_sample(lateness.name, labels, percentiles[round(quantile * 100)])
            labels = {"worker": worker}
            lateness.add_sample(f"{lateness.name}_count", labels, snapshot.get("timers_applied", 0))
            lateness.add_sample(
                f"{lateness.name}_sum", labels, snapshot.get("timer_lateness_sum", 0.0)
            )
        yield lateness

    def _senders(self) -> Iterable[Metric]:
        senders = sorted(self.snapshots.senders.items())
        yield GaugeMetricFamily(
            "journeys_senders", "Senders whose metrics snapshot is fresh.", len(senders)
        )
        records = CounterMetricFamily(
            "journeys_sender_records", "Dispatch records the sender handled.", labels=["sender"]
        )
        dead_letters = CounterMetricFamily(
            "journeys_sender_dead_letters",
            "Records and recipients the sender sent to the dead-letter topic.",
            labels=["sender"],
        )
        deliveries = CounterMetricFamily(
            "journeys_sender_deliveries",
            "Recipients settled by the sender, by outcome (sent, failed, suppressed, duplicate).",
            labels=["channel", "outcome", "sender"],
        )
        for sender, snapshot in senders:
            records.add_metric([sender], snapshot.get("records", 0))
            dead_letters.add_metric([sender], snapshot.get("dead_letters", 0))
            for counted in snapshot.get("deliveries", []):
                deliveries.add_metric(
                    [counted["channel"], counted["outcome"], sender], counted["count"]
                )
        yield from (records, dead_letters, deliveries)


def exposition(snapshots: Snapshots) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JourneysCollector(snapshots))
    return generate_latest(registry)
