"""Faults during a live run, with the simulator as the oracle: kill -9 the worker, kill -9 the
sender, restart Redis (which keeps nothing), restart the MongoDB-wire server, restart Kafka, then
with three workers and two senders in their groups, kill -9 one worker and add another. At the
end the provider stub must have received every expected message exactly once, and each to the
right recipient with the right template and locale: zero duplicates, zero missing, zero wrong.

Each wave signs up demo users and plays one generated case (tests/generated): the demo journey,
the cases' journeys and a generated global rules file are deployed at the start, the case's
events are published at their own times, and its timers come due across the faults that follow.
The oracle is the simulator over every deployed journey and every event (tests/differential.py).
`FAULT_SEED` overrides the first case's seed; `JOURNEYS_SERVICES` the script that restarts the
servers. It runs on the single Redis and on the local Redis Cluster, where the Redis fault
restarts one of its three masters: that master's slots come back empty."""

from __future__ import annotations

import asyncio
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from app.redis_client import cluster_nodes, is_cluster_url
from app.store.deliveries import Deliveries
from app.store.mongo import close_client, new_client
from tests.conftest import BOTH_REDIS
from tests.differential import (
    deploy_cases,
    deployable_cases,
    engine_of,
    oracle,
    provider,
    publish_paced,
    report,
    settle,
    space_streams,
    time_of,
)
from tests.generated import LIVE
from tests.pipeline import Pipeline, signups

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo-onboarding.yaml"
SERVICES = os.environ.get("JOURNEYS_SERVICES", str(ROOT / "scripts" / "services"))
# Users signing up before each fault; the benchmark command runs a larger size.
WAVE_USERS = int(os.environ.get("FAULT_WAVE_USERS", "12"))
SEED = int(os.environ.get("FAULT_SEED", "5000"))
pytestmark = BOTH_REDIS
FAULTS = (
    "kill -9 worker",
    "kill -9 sender",
    "restart redis",
    "restart mongo",
    "restart kafka",
    "kill -9 one of several workers",
    "add a worker mid-run",
)
# When the first wave's case starts after the worker is started, and each next one after it:
# about how long the worker takes to start, and a wave with its fault and the worker back to work.
# A wave that comes later plays its case later.
FIRST_CASE = timedelta(seconds=15)
CASE_SPACING = timedelta(seconds=35)


def restart_redis(url: str) -> None:
    """The single Redis, or the second master of the local cluster (nothing kept on disk)."""
    if not is_cluster_url(url):
        services("down", "redis")
        services("up", "redis")
        return
    _, port = sorted(cluster_nodes(url))[1]
    services("down", f"redis-cluster-{port - 7000}")
    services("up", "redis-cluster")


def services(*args: str) -> None:
    result = subprocess.run([SERVICES, *args], capture_output=True, text=True)
    assert result.returncode == 0, f"services {' '.join(args)}: {result.stderr}"


async def ledger_of(pipeline: Pipeline, dispatch_ids: set[str]) -> dict[str, str]:
    """What the sender recorded of each dispatch id (outcome and reason), for the report."""
    client = new_client(pipeline.settings)
    try:
        deliveries = Deliveries(client[pipeline.settings.mongo_db])
        found = {i: await deliveries.find(i) for i in sorted(dispatch_ids)}
    finally:
        await close_client(client)
    return {
        i: "nothing" if d is None else f"{d.get('outcome')} ({d.get('reason')})"
        for i, d in found.items()
    }


async def consuming(pipeline: Pipeline, n: int) -> None:
    """Waits until the worker applies events (it loads the journeys and rules before that): a
    probe user that enters no journey is stored. A wave's events go out only then: an event
    applied late, after a timer of its user came due, would be applied before that timer."""
    probe = {
        "event_id": f"ready-probe-{n}",
        "user_id": f"ready-probe-{n}",
        "name": "probe",
        "at": datetime.now(UTC).isoformat(),
        "attributes": {"probe": True},
    }
    await pipeline.publish([probe])
    await pipeline.stored([probe["user_id"]], timeout=120)


async def test_no_duplicate_no_missing_no_wrong_message_through_crashes_and_restarts(
    pipeline, tmp_path
) -> None:
    seeds = [SEED + i for i in range(len(FAULTS))]
    first = datetime.now(UTC).replace(microsecond=0) + FIRST_CASE
    cases, rules = deployable_cases(seeds, first, rules=True, spacing=CASE_SPACING)
    journeys = [DEMO.read_text(), *(text for case in cases for text in case.journeys)]
    engine = engine_of(journeys, rules)
    published: list[dict] = []
    fault_of: dict[str, str] = {}  # user -> the fault its wave ran into

    async def wave(number: int) -> None:
        """The demo users sign up as the wave's case starts, and the case plays at its own
        times (later if the wave is late)."""
        case = cases[number - 1]
        demo = signups(f"w{number}", WAVE_USERS, case.base)
        events, _ = space_streams(engine, {case.seed: [*demo, *case.events]})
        published.extend(events)
        fault_of.update(dict.fromkeys((e["user_id"] for e in events), FAULTS[number - 1]))
        await publish_paced(pipeline, events)

    async with provider(pipeline) as stub:
        await pipeline.deploy(DEMO)
        await deploy_cases(pipeline, tmp_path, cases, rules)
        pipeline.start("worker")
        pipeline.start("sender")
        await consuming(pipeline, 0)

        await wave(1)
        await asyncio.sleep(4)
        pipeline.kill("worker")
        pipeline.start("worker")
        await consuming(pipeline, 1)

        await wave(2)
        await asyncio.sleep(4)
        pipeline.kill("sender")
        pipeline.start("sender")
        await consuming(pipeline, 2)

        await wave(3)
        await asyncio.sleep(2)
        restart_redis(pipeline.settings.redis_url)
        await consuming(pipeline, 3)

        await wave(4)
        await asyncio.sleep(2)
        services("down", "mongo")
        await asyncio.sleep(1)
        services("up", "mongo")
        await consuming(pipeline, 4)

        await wave(5)
        await asyncio.sleep(2)
        services("down", "kafka")
        services("up", "kafka")

        # Three workers and two senders in each group from here: one worker is killed while
        # its partitions are busy, and a fourth joins under load (two rebalances).
        pipeline.start("worker", "worker-2")
        pipeline.start("worker", "worker-3")
        pipeline.start("sender", "sender-2")
        await consuming(pipeline, 5)

        await wave(6)
        await asyncio.sleep(2)
        pipeline.kill("worker-2")
        await consuming(pipeline, 6)

        await wave(7)
        await asyncio.sleep(2)
        pipeline.start("worker", "worker-4")

        last = max(time_of(e) for e in published)
        prediction = oracle(engine, published, last + LIVE.settle)
        expected, sends = prediction.deliveries, prediction.sends
        latest = max([send.send_at for send in sends] + [last])
        deadline = max(datetime.now(UTC) + timedelta(seconds=240 + WAVE_USERS), latest)
        got = await settle(stub, len(expected), deadline)
        requests = stub.requests
        ledger = await ledger_of(pipeline, {d[0] for d in expected - got})

    kind = "redis-cluster" if is_cluster_url(pipeline.settings.redis_url) else "redis"
    by_id = {send.dispatch_id: send for send in sends}
    got_by_id = {delivery[0]: delivery for delivery in got}
    for fault in FAULTS:
        wanted = {d for d in expected if fault_of[by_id[d[0]].user_id] == fault}
        ids = {d[0] for d in wanted}
        figures = {
            "expected": len(wanted),
            "generated": sum(1 for d in wanted if by_id[d[0]].user_id.startswith("g")),
            "delivered": len(ids & set(got_by_id)),
            "missing": len(ids - set(got_by_id)),
            "wrong": sum(1 for d in wanted if d[0] in got_by_id and got_by_id[d[0]] != d),
            # Requests the provider stub answered from its idempotency-key memory.
            "repeated_requests": sum(requests[d] - 1 for d in ids if requests[d] > 1),
        }
        print(f"fault suite [{kind}]: {fault}: {figures}")
    unexpected = set(got_by_id) - {d[0] for d in expected}
    print(f"fault suite [{kind}]: unexpected deliveries: {len(unexpected)}")
    title = (
        f"fault suite [{kind}], seeds {seeds} (FAULT_SEED={SEED}), {WAVE_USERS} demo users per "
        f"wave: {len(expected)} deliveries expected, {len(got)} received"
    )
    print(title)
    ledger_lines = "".join(f"\n  ledger of {i}: {outcome}" for i, outcome in ledger.items())
    assert got == expected, report(title, expected, got, set(), set(), sends) + ledger_lines
