"""`/metrics` and `/ready` on a live API: the workers' and senders' snapshots, published to Redis
by the code the worker and the sender run, exported per process in the Prometheus text format
with HELP and TYPE; a snapshot gone stale leaves the output and Redis; each dependency's check."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from prometheus_client.parser import text_string_to_metric_families
from pytest import approx

from app.api.metrics import Snapshots, exposition
from app.api.readiness import readiness
from app.engine import TimerFired
from app.keyspace import Keyspace
from app.metrics_snapshots import STALE_AFTER_SECONDS, publish_snapshot
from app.redis_client import new_redis
from app.sender.service import SenderMetrics
from app.worker.metrics import WorkerMetrics
from tests.api.test_api import AUTH, api_client, stack  # noqa: F401 (stack: a fixture)

DUE = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
DASHBOARD = Path(__file__).resolve().parents[2] / "docker" / "grafana-dashboard.json"


def worker_metrics(inputs: int, state_writes: int, lateness: list[float]) -> WorkerMetrics:
    metrics = WorkerMetrics(inputs=inputs, state_writes=state_writes, branch_refused=1)
    for seconds in lateness:
        timer = TimerFired(user_id="u", timer_id="t", due_at=DUE)
        metrics.observe_input(timer, DUE + timedelta(seconds=seconds))
    return metrics


def sender_metrics() -> SenderMetrics:
    metrics = SenderMetrics(records=4, dead_letters=1)
    for channel, outcome in [("email", "sent"), ("email", "sent"), ("email", "failed")]:
        metrics.count(channel, outcome)
    metrics.count("push", "suppressed")
    return metrics


async def test_metrics_per_worker_and_sender_with_help_and_type_and_stale_ones_dropped(
    stack,  # noqa: F811
) -> None:
    keys = Keyspace(stack.redis_prefix)
    redis = new_redis(stack)
    now = time.time()
    live = worker_metrics(10, 8, [0.2] * 50 + [1.5] * 50).snapshot()
    await publish_snapshot(redis, keys.worker_metrics("w-live"), "w-live", live, now)
    other = worker_metrics(6, 6, []).snapshot()
    await publish_snapshot(redis, keys.worker_metrics("w-other"), "w-other", other, now)
    killed = worker_metrics(99, 99, []).snapshot()
    aged = now - STALE_AFTER_SECONDS - 1
    await publish_snapshot(redis, keys.worker_metrics("w-killed"), "w-killed", killed, aged)
    sender = sender_metrics().snapshot()
    await publish_snapshot(redis, keys.sender_metrics(), "s-1", sender, now)
    client = await api_client(stack)
    try:
        response = await client.get("/metrics", headers=AUTH)
        text = await response.text()
    finally:
        await client.close()
        still = [await redis.hgetall(shard) for shard in keys.worker_metrics_shards()]
        await redis.aclose()
    assert response.status == 200 and response.content_type == "text/plain"
    families = {family.name: family for family in text_string_to_metric_families(text)}
    for family in families.values():
        exposed = f"{family.name}_total" if family.type == "counter" else family.name
        assert f"# HELP {exposed} {family.documentation}\n" in text and family.documentation
        assert f"# TYPE {exposed} {family.type}\n" in text
    values = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in families.values()
        for sample in family.samples
    }
    assert values[("journeys_inputs_total", (("worker", "w-live"),))] == 10
    assert values[("journeys_inputs_total", (("worker", "w-other"),))] == 6
    assert values[("journeys_branch_refused_total", (("worker", "w-live"),))] == 1
    assert values[("journeys_workers", ())] == 2
    assert values[("journeys_mongo_writes_per_input", ())] == 14 / 16
    assert families["journeys_timer_lateness_seconds"].type == "summary"
    lateness = {
        labels: value for (name, labels), value in values.items() if name.startswith("journeys_t")
    }
    assert lateness[(("quantile", "0.5"), ("worker", "w-live"))] == 1.5
    assert lateness[(("quantile", "0.99"), ("worker", "w-live"))] == 1.5
    assert values[("journeys_timer_lateness_seconds_count", (("worker", "w-live"),))] == 100
    assert values[("journeys_timer_lateness_seconds_sum", (("worker", "w-live"),))] == approx(85)
    assert not [labels for _, labels in values if ("worker", "w-killed") in labels]
    assert all(b"w-killed" not in shard for shard in still)  # removed from its hash
    assert {b"w-live", b"w-other"} == {worker for shard in still for worker in shard}
    deliveries = {
        labels: value
        for (name, labels), value in values.items()
        if name == "journeys_sender_deliveries_total"
    }
    assert deliveries == {
        (("channel", "email"), ("outcome", "failed"), ("sender", "s-1")): 1,
        (("channel", "email"), ("outcome", "sent"), ("sender", "s-1")): 2,
        (("channel", "push"), ("outcome", "suppressed"), ("sender", "s-1")): 1,
    }
    assert values[("journeys_sender_records_total", (("sender", "s-1"),))] == 4
    assert values[("journeys_sender_dead_letters_total", (("sender", "s-1"),))] == 1
    assert values[("journeys_senders", ())] == 1


async def test_ready_reports_kafka_mongo_and_redis_each_with_its_time(stack) -> None:  # noqa: F811
    client = await api_client(stack)
    try:
        response = await client.get("/ready")
        body = await response.json()
    finally:
        await client.close()
    assert response.status == 200 and body["ready"] is True
    assert sorted(body["checks"]) == ["kafka", "mongo", "redis"]
    for check in body["checks"].values():
        assert check["status"] == "ok" and 0 <= check["seconds"] < 2


async def test_a_server_that_refuses_or_hangs_fails_readiness_in_its_timeout(stack) -> None:  # noqa: F811
    silent = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    refusing = new_redis(dataclasses.replace(stack, redis_url="redis://127.0.0.1:1"))
    hanging = new_redis(dataclasses.replace(stack, redis_url=f"redis://127.0.0.1:{port}"))
    working = new_redis(stack)
    started = time.monotonic()
    try:
        ready, checks = await readiness(
            {"refusing": refusing.ping, "hanging": hanging.ping, "working": working.ping},
            timeout=0.5,
        )
    finally:
        for client in (refusing, hanging, working):
            await client.aclose()
        silent.close()
    assert not ready and time.monotonic() - started < 2
    assert checks["working"]["status"] == "ok"
    assert "Connect" in str(checks["refusing"]["status"])
    assert checks["hanging"]["status"] == "no answer in 0.5 s"
    assert 0.5 <= checks["hanging"]["seconds"] < 1.5


def test_the_grafana_dashboard_queries_only_series_the_api_exports() -> None:
    snapshots = Snapshots(
        workers={"w": worker_metrics(1, 1, [0.1]).snapshot()},
        senders={"s": sender_metrics().snapshot()},
    )
    exported = {
        sample.name
        for family in text_string_to_metric_families(exposition(snapshots).decode())
        for sample in family.samples
    }
    dashboard = orjson.loads(DASHBOARD.read_bytes())
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert {"Input rate", "Timer lateness", "Deliveries by outcome", "Dead letters"} <= titles
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"journeys_\w+", target["expr"])
    }
    assert queried and queried <= exported, queried - exported
