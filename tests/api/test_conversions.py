"""`GET /journeys/{id}/conversions`: entries and conversions per version, messaged and holdout,
and per split variant, counted from the figures kept of the timeline the real processor writes."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import orjson

from app.engine import Analytics, JourneyEngine, UserEvent, load_journey_text
from app.engine.conversions import conversion_figures, first_branches
from app.engine.simulator import Simulator
from app.redis_client import new_redis
from app.store.journeys import JourneyRegistry
from app.store.mongo import close_client, new_client
from app.store.users import UserStore
from app.worker.branch_lock import BranchLock
from app.worker.due_index import DueIndex
from app.worker.emitted_marks import EmittedMarks
from app.worker.emitter import Emitter
from app.worker.entry_slots import EntrySlots
from app.worker.metrics import WorkerMetrics
from app.worker.processor import BatchProcessor, InputRecord
from app.worker.send_buffer import SendBuffer
from tests.api.test_api import AUTH, api_client, stack  # noqa: F401  (the fixture)
from tests.projected import ProjectedAtOnce

JOURNEY = """
id: upsell
version: 1
entry: {event: signed_up}
holdout: 25
goal: {event: purchased, within: 3d, exit_on_conversion: true}
steps:
  variant:
    type: split
    branches:
      - {id: b, percent: 50, next: hello}
      - {id: a, percent: 50, next: hello}
  hello: {type: message, channel: webhook, template: hello}
"""


async def run_events(settings, batches: list[list[dict]]) -> None:
    """Each batch through the real processor; the entries end with their message, so the
    purchases of a later batch convert goals read back from the store."""
    client, redis = new_client(settings), new_redis(settings)
    db = client[settings.mongo_db]
    await JourneyRegistry(db).deploy(JOURNEY, "upsell.yaml")
    metrics = WorkerMetrics()
    emitter = Emitter(
        BranchLock(redis, settings.redis_prefix, 60),
        SendBuffer(redis, settings.redis_prefix),
        db,
        metrics,
        ProjectedAtOnce(db),
    )
    processor = BatchProcessor(
        lambda: JourneyEngine([load_journey_text(JOURNEY)]),
        UserStore(db, settings.mongo_bulk_ops),
        emitter,
        DueIndex(redis, settings.redis_prefix),
        EmittedMarks(redis, settings.redis_prefix),
        8,
        metrics,
        65536,
        EntrySlots(redis, settings.redis_prefix, db, 3600),
    )
    offset = 0
    for events in batches:
        records = []
        for event in events:
            key, value = event["user_id"].encode(), orjson.dumps(event)
            records.append(InputRecord("user-events", 0, offset, key, value))
            offset += 1
        assert await processor.process(records, datetime(2026, 11, 2, 13, tzinfo=UTC)) == []
    await redis.aclose()
    await close_client(client)


async def twelve_sign_up_six_buy(settings) -> list[dict]:
    """Twelve users sign up, then six of them buy; the events, in order."""
    users = [f"u{i}" for i in range(12)]
    signed = [
        {"event_id": f"s-{u}", "user_id": u, "name": "signed_up", "at": "2026-11-02T09:00:00Z"}
        for u in users
    ]
    bought = [
        {"event_id": f"p-{u}", "user_id": u, "name": "purchased", "at": "2026-11-02T10:00:00Z"}
        for u in users[:6]
    ]
    await run_events(settings, [signed, bought])
    return signed + bought


async def test_conversions_per_version_holdout_and_variant(stack) -> None:  # noqa: F811
    events = await twelve_sign_up_six_buy(stack)
    simulator = Simulator(JourneyEngine([load_journey_text(JOURNEY)]))
    simulator.feed(UserEvent.from_record(e) for e in events)
    predicted = conversion_figures(
        item.effect.to_record() for item in simulator.effects if isinstance(item.effect, Analytics)
    )
    client = await api_client(stack)
    try:
        answer = await client.get("/journeys/upsell/conversions", headers=AUTH)
        assert answer.status == 200
        body = await answer.json()
        missing = await client.get("/journeys/nothing/conversions", headers=AUTH)
        assert missing.status == 404
    finally:
        await client.close()
    figures = body["versions"]["1"]
    assert figures == predicted[1].to_json(first_branches(load_journey_text(JOURNEY)))
    assert figures["all"] == {
        "entered": 12,
        "converted": 6,
        "rate": 0.5,
        "interval_95": [0.2538, 0.7462],
    }
    # b is the split's first branch as defined, so a is compared with it (not by name).
    compared = [(c["group"], c["baseline"]) for c in figures["comparisons"]]
    assert compared == [("messaged", "holdout"), ("variant=a", "variant=b")]
    assert figures["holdout"]["entered"] > 0 and set(figures["variants"]["variant"]) == {"a", "b"}
    assert (
        sum(v["converted"] for v in figures["variants"]["variant"].values())
        == (figures["messaged"]["converted"])
    )


async def test_flow_page_per_variant(stack) -> None:  # noqa: F811
    await twelve_sign_up_six_buy(stack)
    client = await api_client(stack)
    try:
        body = await (await client.get("/journeys/upsell/conversions", headers=AUTH)).json()
        answer = await client.get(
            "/journeys/upsell/flow", params={"variant": "variant=a"}, headers=AUTH
        )
        assert answer.status == 200
        page = await answer.text()
        unknown = await client.get(
            "/journeys/upsell/flow", params={"variant": "variant=z"}, headers=AUTH
        )
        assert unknown.status == 400
        error = await unknown.json()
    finally:
        await client.close()
    assert '<select name="variant">' in page
    assert '<option value="variant=a" selected>variant=a</option>' in page
    assert '<option value="variant=b">variant=b</option>' in page
    assert '<g class="node split dimmed" data-step="variant">' in page  # before the branch
    assert re.search(r'<g class="node message" data-step="hello">.*?all variants</text>', page)
    a = body["versions"]["1"]["variants"]["variant"]["a"]
    assert f"variant=a: {a['entered']} entries, {a['converted']} conversions" in page
    # Compared with the first branch as defined, as /conversions compares it.
    assert "variant=a converts" in page and "for variant=b" in page
    assert error == {
        "error": "no variant 'variant=z' in version 1 of 'upsell'",
        "where": "variant",
        "expected": ["variant=b", "variant=a"],
    }
