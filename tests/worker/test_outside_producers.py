"""Producers that partition differently (issue 12.3): events published with kcat, whose
librdkafka partitioner hashes keys with CRC32, not murmur2, some with no key and some keyed by
something other than the user id, must give the simulator's deliveries. The abandoned-cart
journey's reminder must not go to a user who bought within the wait."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import orjson

from app.keyspace import Keyspace
from app.topics import load_contract
from app.worker.partitions import partition_of
from tests.kafka_reader import read_messages
from tests.worker.test_pipeline import EXAMPLES, oracle

KCAT = "kcat"  # Debian's kcat; scripts/test installs it
TIMEOUT_SECONDS = 8


async def kcat(bootstrap: str, topic: str, lines: list[bytes], keyed: bool) -> None:
    """Produces one record per line with kcat's default partitioner; keyed lines are
    `key<TAB>value` (see `line`)."""
    key_delimiter = ["-K", "\t"] if keyed else []
    process = await asyncio.create_subprocess_exec(
        KCAT, "-P", "-b", bootstrap, "-t", topic, *key_delimiter, stdin=asyncio.subprocess.PIPE
    )
    await process.communicate(b"\n".join(lines) + b"\n")
    assert process.returncode == 0


def line(key: str, record: dict) -> bytes:
    return key.encode() + b"\t" + orjson.dumps(record)


def cart_journey(tmp_path: Path) -> Path:
    """examples/abandoned-cart.yaml with a wait of seconds, not an hour, and no quiet hours (so the
    test does not depend on the time of day)."""
    text = (EXAMPLES / "abandoned-cart.yaml").read_text()
    assert "timeout: 1h" in text and "quiet_hours" in text
    text = text.replace("timeout: 1h", f"timeout: {TIMEOUT_SECONDS}s")
    path = tmp_path / "abandoned-cart.yaml"
    path.write_text("\n".join(line for line in text.splitlines() if "quiet_hours" not in line))
    return path


def cart(user: str, at: datetime) -> dict:
    return {"event_id": f"{user}-cart", "user_id": user, "name": "added_to_cart",
            "at": at.isoformat(), "properties": {"sku": "lamp"},
            "attributes": {"push_token": f"tok-{user}"}}  # fmt: skip


def purchase(user: str, at: datetime) -> dict:
    return {"event_id": f"{user}-buy", "user_id": user, "name": "purchased", "at": at.isoformat()}


async def test_kcat_partitioning_and_bad_keys_give_the_simulators_deliveries(
    pipeline, tmp_path, redis_client
) -> None:
    settings, bootstrap = pipeline.settings, pipeline.settings.kafka_bootstrap
    user_events = settings.topic("user-events")
    journey = cart_journey(tmp_path)
    await pipeline.deploy(journey)
    pipeline.start_worker()
    # The worker is up once it applied a first record.
    warm_up = {"event_id": "w-1", "user_id": "w", "name": "page_viewed",
               "at": datetime.now(UTC).isoformat()}  # fmt: skip
    await kcat(bootstrap, user_events, [orjson.dumps(warm_up)], keyed=False)
    await pipeline.stored(["w"], timeout=90)

    users = [f"kcat-{i:02d}" for i in range(24)]
    carts = [cart(user, datetime.now(UTC)) for user in users]
    await kcat(bootstrap, user_events, [line(c["user_id"], c) for c in carts], keyed=True)
    # Each cart is applied before its user's purchase is published: a producer that spreads one
    # user's events over partitions gives no order between them.
    await pipeline.stored(users, timeout=30)
    bought_at = datetime.now(UTC)
    unkeyed = [purchase(user, bought_at) for user in users[0::3]]
    session_keyed = [purchase(user, bought_at) for user in users[1::3]]
    bad = {"user_id": "kcat-02", "name": "purchased"}
    await kcat(bootstrap, user_events, [orjson.dumps(p) for p in unkeyed], keyed=False)
    lines = [line(f"session-{p['user_id']}", p) for p in session_keyed] + [line("kcat-02", bad)]
    await kcat(bootstrap, user_events, lines, keyed=True)
    purchases = unkeyed + session_keyed

    events = [warm_up, *carts, *purchases]
    expected = oracle([journey], events)
    reminded = set(users) - {p["user_id"] for p in purchases}
    assert len(expected) == len(reminded) == 8  # the simulator reminds exactly the non-buyers
    sent = await pipeline.dispatched(timeout=60, until=len(expected))
    await asyncio.sleep(TIMEOUT_SECONDS)  # a reminder after a purchase would come now
    sent = await pipeline.dispatched(timeout=1)
    assert {r["dispatch_id"] for r in sent} == expected
    assert {r["user_id"] for r in sent} == reminded

    # kcat put most users' events elsewhere than murmur2 does; the worker moved them, keyed by
    # user id, with the producer's timestamps, and applied the others where they were.
    partitions = load_contract("user-events-by-user").partitions
    published = await read_messages(bootstrap, user_events, len(events) + 1)
    records = [(m, orjson.loads(m.value)) for m in published]
    home = [
        m for m, record in records if m.partition == partition_of(record["user_id"], partitions)
    ]
    # Copied: the others but the bad record, which the copy step dead-letters.
    away = [(m, record) for m, record in records if m not in home and "event_id" in record]
    assert len(away) > len(users) // 2 and home
    moved = await read_messages(bootstrap, settings.topic("user-events-by-user"), len(away))
    assert len(moved) == len(away)
    by_event = {orjson.loads(m.value)["event_id"]: m for m in moved}
    for message, record in away:
        user, copy = record["user_id"], by_event[record["event_id"]]
        assert (copy.key, copy.partition) == (user.encode(), partition_of(user, partitions))
        assert (copy.value, copy.timestamp) == (message.value, message.timestamp)
    timers = await read_messages(bootstrap, settings.topic("timers"), len(reminded))
    assert all(m.partition == partition_of(m.key.decode(), partitions) for m in timers)

    (letter,) = await pipeline.read("dead-letter", timeout=10, until=1)
    assert letter["source_topic"] == "user-events"
    assert "'event_id' is a required property" in letter["reason"]
    await asyncio.sleep(5)  # the worker publishes its metrics every 5 seconds
    shards = Keyspace(settings.redis_prefix).worker_metrics_shards()
    snapshots = [await redis_client.hgetall(shard) for shard in shards]
    (snapshot,) = [orjson.loads(s) for shard in snapshots for s in shard.values()]
    assert snapshot["miskeyed_records"] == 1 + len(purchases)  # the warm-up had no key either
    assert snapshot["repartitioned"] == len(away)
    assert snapshot["applied_in_place"] == len(home)
