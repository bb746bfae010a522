"""The timeline's analytics leave the worker's hot path through the `timeline` topic: a record's
entries become the documents the emitter used to write, the projector writes a batch once per
effect id (a replay leaves one document each), each of its projections gets the batch, bad
records come back as dead letters without costing the good ones, and every analytics effect the
engine gives fits the topic's contract. Live: a worker's analytics reach the collection through
the topic, and a bad record on it goes to the dead-letter topic while the next good one is
written."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from app.authoring.files import load_journey
from app.engine import Analytics, JourneyEngine, UserEvent, load_journey_text
from app.engine.simulator import Simulator
from app.store.figures import JourneyFigures
from app.store.mongo import close_client, new_client
from app.store.timeline import Timeline
from app.topics import RecordError, load_contract, read_jsonl
from app.worker.emitter import TIMELINE_RECORD_ENTRIES, timeline_entry, timeline_records
from app.worker.processor import InputRecord
from app.worker.timeline_projector import SOURCE, TimelineProjector, timeline_documents

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOW = datetime(2026, 11, 2, 9, 0, 0, 412000, tzinfo=UTC)
# Every field an analytics record can carry: a holdout, split variants, reasons.
UPSELL = """
id: upsell
version: 1
entry: {event: signed_up}
holdout: 25
goal: {event: purchased, within: 3d, exit_on_conversion: true}
steps:
  variant:
    type: split
    branches:
      - {id: a, percent: 50, next: hello}
      - {id: b, percent: 50, next: hello}
  hello: {type: message, channel: webhook, template: hello, next: wait}
  wait: {type: delay, duration: 1d}
"""
ONE_EMAIL = """
id: one-email
version: 1
entry: {event: signed_up}
steps:
  hello: {type: message, channel: email, template: hello}
"""


def analytics_of(engine: JourneyEngine, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    simulator = Simulator(engine)
    simulator.feed(UserEvent.from_record(e) for e in events)
    simulator.finish(timedelta(days=30))
    return [i.effect.to_record() for i in simulator.effects if isinstance(i.effect, Analytics)]


def upsell_analytics() -> list[dict[str, Any]]:
    users = [f"u{i}" for i in range(12)]
    events = [
        {"event_id": f"s-{u}", "user_id": u, "name": "signed_up", "at": "2026-11-02T09:00:00Z"}
        for u in users
    ] + [
        {"event_id": f"p-{u}", "user_id": u, "name": "purchased", "at": "2026-11-02T10:00:00Z"}
        for u in users[:6]
    ]
    return analytics_of(JourneyEngine([load_journey_text(UPSELL)]), events)


def by_user(effects: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    users: dict[str, list[dict[str, Any]]] = {}
    for effect in effects:
        users.setdefault(effect["user_id"], []).append(effect)
    return users


def records_of(effects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The `timeline` records the emitter makes of these effects, emitted in one micro-batch."""
    return [r for user, own in by_user(effects).items() for r in timeline_records(user, own, NOW)]


def on_the_wire(records: list[dict[str, Any]], first_offset: int = 0) -> list[InputRecord]:
    """Records as the projector's agent hands them over, encoded as the publisher encodes them."""
    return [
        InputRecord(SOURCE, 0, first_offset + i, r["user_id"].encode(), orjson.dumps(r))
        for i, r in enumerate(records)
    ]


class Collected:
    """Stands for the timeline collection and the figures: keeps what each is given, and the
    order the calls came in."""

    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.counted: list[list[tuple[int, int, dict[str, Any]]]] = []
        self.calls: list[str] = []

    async def record(self, entries: list[dict[str, Any]]) -> None:
        self.batches.append(entries)
        self.calls.append("insert")

    async def add_new(self, records: list[tuple[int, int, dict[str, Any]]]) -> None:
        self.counted.append(records)
        self.calls.append("count")


def test_a_users_effects_become_the_documents_the_emitter_wrote_before() -> None:
    for user, effects in by_user(upsell_analytics()).items():
        (record,) = timeline_records(user, effects, NOW)
        wire = orjson.loads(orjson.dumps(record))
        load_contract(SOURCE).validate(wire)
        assert timeline_documents(wire) == [timeline_entry(user, e, NOW) for e in effects]


def test_the_upsell_journey_gives_every_optional_field() -> None:
    records = upsell_analytics()
    assert any(r.get("holdout") for r in records)
    assert any(r.get("variants") for r in records)
    assert any(r["reason"] for r in records)


def test_a_long_outbox_is_split_into_records_the_contract_takes() -> None:
    effect = upsell_analytics()[0]
    effects = [{**effect, "reason": f"r{i}"} for i in range(2 * TIMELINE_RECORD_ENTRIES + 1)]
    records = timeline_records(effect["user_id"], effects, NOW)
    assert [len(r["entries"]) for r in records] == [TIMELINE_RECORD_ENTRIES] * 2 + [1]
    for record in records:
        load_contract(SOURCE).validate(record)
    too_long = {**records[0], "entries": records[0]["entries"] + records[2]["entries"]}
    with pytest.raises(RecordError, match="/entries"):
        load_contract(SOURCE).validate(too_long)
    assert timeline_records(effect["user_id"], [], NOW) == []


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_analytics_effect_of_the_examples_fits_the_contract(path: Path) -> None:
    events = read_jsonl("user-events", path.with_suffix(".events.jsonl"))
    records = records_of(analytics_of(JourneyEngine([load_journey(path)]), events))
    assert records
    for record in records:
        load_contract(SOURCE).validate(record)


async def test_one_batch_counted_then_written_once_per_effect_id() -> None:
    collected = Collected()
    projector = TimelineProjector(collected, collected)  # type: ignore[arg-type]
    effects = upsell_analytics()
    records = records_of(effects)
    assert len(records) < len(effects)  # a user's effects travel together
    letters = await projector.process(on_the_wire([*records, records[0], records[-1]]), NOW)
    assert letters == []
    expected = [timeline_entry(u, e, NOW) for u, own in by_user(effects).items() for e in own]
    assert collected.batches == [expected]
    assert [[document for _, _, document in batch] for batch in collected.counted] == [expected]
    # each effect counted at its first record's offset, before the insert (crash between: exact)
    assert [offset for _, offset, _ in collected.counted[0]] == sorted(
        offset for _, offset, _ in collected.counted[0]
    )
    assert collected.calls == ["count", "insert"]


async def test_bad_records_come_back_as_dead_letters_and_the_good_ones_are_projected() -> None:
    collected = Collected()
    projector = TimelineProjector(collected, collected)  # type: ignore[arg-type]
    effect = upsell_analytics()[0]
    (good,) = timeline_records(effect["user_id"], [effect], NOW)
    entry = good["entries"][0]

    def with_entry(**changed: Any) -> bytes:
        return orjson.dumps({**good, "entries": [{**entry, **changed}]})

    bad = [
        b"not json",
        with_entry(effect_id="x"),
        with_entry(effect={**effect, "kind": "send"}),
        with_entry(effect={**effect, "a.b": 1}),
        orjson.dumps({**good, "entries": []}),
    ]
    inputs = [InputRecord(SOURCE, 1, i, b"k", value) for i, value in enumerate(bad)]
    inputs += on_the_wire([good], first_offset=len(bad))
    letters = await projector.process(inputs, NOW)
    assert [(letter.source_topic, letter.offset) for letter in letters] == [
        (SOURCE, i) for i in range(len(bad))
    ]
    assert "not JSON" in letters[0].reason
    assert [letter.where for letter in letters[1:]] == [
        "/entries/0/effect_id",
        "/entries/0/effect/kind",
        "/entries/0/effect",
        "/entries",
    ]
    assert "'a.b' was unexpected" in letters[3].reason  # only the keys the contract lists
    assert collected.batches == [[timeline_entry(effect["user_id"], effect, NOW)]]


async def test_nothing_to_project_writes_nothing() -> None:
    collected = Collected()
    projector = TimelineProjector(collected, collected)  # type: ignore[arg-type]
    assert len(await projector.process([InputRecord(SOURCE, 0, 0, None, None)], NOW)) == 1
    assert collected.batches == []


@pytest.mark.servers
async def test_projecting_the_same_records_again_leaves_one_document_each(store_db) -> None:
    projector = TimelineProjector(Timeline(store_db), JourneyFigures(store_db))
    effects = upsell_analytics()
    records = records_of(effects)
    assert await projector.process(on_the_wire(records), NOW) == []
    assert await projector.process(on_the_wire(records[::-1], len(records)), NOW) == []
    stored = {doc["_id"]: doc for doc in await store_db["timeline"].find().to_list(None)}
    expected = [timeline_entry(e["user_id"], e, NOW) for e in effects]
    assert sorted(stored) == sorted(entry["_id"] for entry in expected)
    assert len(stored) == len(effects)
    for entry in expected:
        assert stored[entry["_id"]]["event"] == entry["event"]
        assert stored[entry["_id"]]["recorded_at"].replace(tzinfo=UTC) == NOW
    figures = await JourneyFigures(store_db).read(effects[0]["journey_id"])
    entered = sum(steps.get("-", {}).get("entered", 0) for steps in figures.values())
    assert entered == sum(1 for e in effects if e["event"] == "entered")  # counted once


# --- live -------------------------------------------------------------------------------------


async def timeline_of(pipeline, user: str) -> list[dict[str, Any]]:
    client = new_client(pipeline.settings)
    try:
        cursor = client[pipeline.settings.mongo_db]["timeline"].find({"user_id": user})
        return await cursor.to_list(None)
    finally:
        await close_client(client)


async def until_on_the_timeline(pipeline, user: str, count: int) -> list[dict[str, Any]]:
    async with asyncio.timeout(90):
        while len(entries := await timeline_of(pipeline, user)) < count:
            await asyncio.sleep(0.3)
    return entries


async def test_analytics_reach_the_timeline_through_the_topic(pipeline, tmp_path: Path) -> None:
    path = tmp_path / "one-email.yaml"
    path.write_text(ONE_EMAIL)
    await pipeline.deploy(path)
    pipeline.start_worker()
    at = datetime.now(UTC).isoformat()
    await pipeline.publish([{"event_id": "e1", "user_id": "ana", "name": "signed_up", "at": at}])

    entries = await until_on_the_timeline(pipeline, "ana", 3)
    kinds = sorted((e["kind"], e.get("event")) for e in entries)
    assert kinds == [("analytics", "completed"), ("analytics", "entered"), ("send", None)]
    (record,) = await pipeline.read("timeline", timeout=10, until=1)  # one per user and batch
    assert [e["effect"]["event"] for e in record["entries"]] == ["entered", "completed"]
    projected = sorted(e["_id"] for e in entries if e["kind"] != "send")
    assert projected == sorted(e["effect_id"] for e in record["entries"])

    # The same record again (a replayed outbox), a bad record, then a good new one.
    effect = {**record["entries"][0]["effect"], "event": "exited", "reason": "a test's replay"}
    (new,) = timeline_records("ana", [effect], datetime.now(UTC))
    no_entries = {"user_id": "ana", "recorded_at": new["recorded_at"]}
    producer = AIOKafkaProducer(bootstrap_servers=pipeline.settings.kafka_bootstrap)
    await producer.start()
    try:
        topic = pipeline.settings.topic("timeline")
        for value in map(orjson.dumps, [record, no_entries, new]):
            await producer.send_and_wait(topic, value, key=b"ana")
    finally:
        await producer.stop()

    entries = await until_on_the_timeline(pipeline, "ana", 4)  # the good record after the bad
    assert sorted(e["_id"] for e in entries if e["kind"] != "send") == sorted(
        [*projected, new["entries"][0]["effect_id"]]
    )
    (letter,) = await pipeline.read("dead-letter", timeout=3)  # the bad record alone
    assert letter["source_topic"] == "timeline" and letter["service"] == "worker"
    assert "'entries' is a required property" in letter["reason"]
