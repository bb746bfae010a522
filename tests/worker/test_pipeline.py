"""The live pipeline on real Kafka, MongoDB-wire and Redis, with a real `journeys worker` process,
checked against the simulator: the oracle for the same events."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from app.authoring.files import load_journey, load_rules
from app.engine import JourneyEngine, Send, UserEvent
from app.engine.simulator import simulate
from app.redis_client import open_redis
from app.store.versions import DRAFT
from app.streams.publish import rebased
from app.topics import load_contract, read_jsonl
from app.worker.due_index import DueIndex
from tests.pipeline import ROOT, signups

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DEMO = EXAMPLES / "demo-onboarding.yaml"
TWO_EMAILS = (
    "id: two-emails\nversion: 1\nentry: {event: signed_up}\nsteps:\n"
    "  first: {type: message, channel: email, template: hello, next: wait}\n"
    "  wait: {type: delay, duration: 2s, next: second}\n"
    "  second: {type: message, channel: email, template: again}\n"
)
ONE_EMAIL_A_DAY = (
    "kind: rules\nversion: 1\nfrequency_caps:\n  - {channel: email, limit: 1, window: 1d}\n"
)


def oracle(journeys: list[Path], events: list[dict], rules: Path | None = None) -> set[str]:
    engine = JourneyEngine(
        [load_journey(path) for path in journeys], load_rules(rules) if rules else None
    )
    effects = simulate(engine, [UserEvent.from_record(e) for e in events])
    return {e.effect.dispatch_id for e in effects if isinstance(e.effect, Send)}


async def test_sends_match_the_simulator(pipeline) -> None:
    await pipeline.deploy(DEMO)
    pipeline.start_worker()
    await asyncio.sleep(3)  # the events span 2 s up to now: all after the journey's publication
    events = rebased(
        read_jsonl("user-events", EXAMPLES / "demo-onboarding.events.jsonl"), datetime.now(UTC)
    )
    expected = oracle([DEMO], events)
    assert len(expected) == 6  # welcome x3, congrats for cy, push nudge for bo, webhook for ada
    await pipeline.publish(events)
    sent = await pipeline.dispatched(timeout=120, until=len(expected))
    assert {r["dispatch_id"] for r in sent} == expected
    bo = {r["step_id"] for r in sent if r["user_id"] == "bo"}
    assert bo == {"welcome", "push_nudge"}  # the mobile path won; the other was cancelled
    # Faust's data directory is outside the checkout the worker ran in.
    assert not (ROOT / f"{pipeline.env['WORKER_APP_ID']}-data").exists()


async def test_kill_9_and_restart_loses_and_adds_nothing(pipeline) -> None:
    await pipeline.deploy(DEMO)
    pipeline.start_worker()
    await asyncio.sleep(2)  # the sign-ups are a second before now: after the publication
    events = signups("kill", 60, datetime.now(UTC))
    expected = oracle([DEMO], events)
    await pipeline.publish(events)
    await asyncio.sleep(4)
    pipeline.kill_worker()
    pipeline.start_worker()
    sent = await pipeline.dispatched(timeout=90, until=len(expected))
    await asyncio.sleep(3)  # anything extra would arrive now
    sent = await pipeline.dispatched(timeout=1)
    assert {r["dispatch_id"] for r in sent} == expected


async def test_timers_a_dead_pump_claimed_fire_without_waiting_out_its_claims(
    pipeline, tmp_path
) -> None:
    """A worker killed after its pump claimed due entries but before it published them: the
    worker that gains the partitions fires those timers at once, not when the claims lapse."""
    journey = tmp_path / "two-emails.yaml"
    journey.write_text(TWO_EMAILS.replace("duration: 2s", "duration: 15s"))
    await pipeline.deploy(journey)
    pipeline.start_worker()
    await asyncio.sleep(3)
    signed_up = datetime.now(UTC)
    events = [
        {"event_id": f"c-{i}", "user_id": f"c-{i}", "name": "signed_up",
         "at": signed_up.isoformat(), "attributes": {"email": f"c{i}@x.test"}}
        for i in range(10)
    ]  # fmt: skip
    await pipeline.publish(events)
    firsts = await pipeline.dispatched(timeout=60, until=10)
    assert len(firsts) == 10
    pipeline.kill_worker()
    # The timers come due; the dead pump had claimed them all for ten minutes, and died.
    await asyncio.sleep((signed_up + timedelta(seconds=16) - datetime.now(UTC)).total_seconds())
    now = datetime.now(UTC)
    redis = await open_redis(pipeline.settings)
    try:
        claims = await DueIndex(redis, pipeline.settings.redis_prefix).claim(
            range(load_contract("timers").partitions), now, now + timedelta(minutes=10), 1000
        )
    finally:
        await redis.aclose()
    assert len(claims) == 10
    pipeline.start_worker()
    # Within a minute, not ten: the claims did not hold them. (A worker killed early may also
    # put its sends back on the topic once more: the sender drops repeats by dispatch id.)
    sent = await pipeline.dispatched(timeout=60, until=20)
    steps = Counter({r["dispatch_id"]: r["step_id"] for r in sent}.values())
    assert steps == {"first": 10, "second": 10}


async def test_bad_record_goes_to_dead_letter_and_the_next_is_processed(pipeline) -> None:
    await pipeline.deploy(DEMO)
    pipeline.start_worker()
    producer = AIOKafkaProducer(bootstrap_servers=pipeline.settings.kafka_bootstrap)
    await producer.start()
    try:
        topic = pipeline.settings.topic("user-events")
        await producer.send_and_wait(topic, b'{"user_id": "zed", "name": "signed_up"}', key=b"zed")
        good = {
            "event_id": "z-1",
            "user_id": "zed",
            "name": "signed_up",
            "at": datetime.now(UTC).isoformat(),
            "attributes": {"email": "zed@x.test"},
        }
        await producer.send_and_wait(topic, orjson.dumps(good), key=b"zed")
    finally:
        await producer.stop()
    (letter,) = await pipeline.read("dead-letter", timeout=60, until=1)
    assert letter["source_topic"] == "user-events"
    assert "'event_id' is a required property" in letter["reason"]
    assert letter["service"] == "worker"
    sent = await pipeline.dispatched(timeout=60, until=1)
    assert [(r["user_id"], r["step_id"]) for r in sent[:1]] == [("zed", "welcome")]


async def test_a_new_version_does_not_change_the_path_of_users_inside(pipeline, tmp_path) -> None:
    v1 = tmp_path / "v1.yaml"
    v1.write_text(
        "id: versioned\nversion: 1\nentry: {event: signed_up}\nsteps:\n"
        "  wait: {type: delay, duration: 6s, next: old}\n"
        "  old: {type: message, channel: email, template: old_copy}\n"
    )
    v2 = tmp_path / "v2.yaml"
    v2.write_text(v1.read_text().replace("version: 1", "version: 2").replace("old", "new"))
    await pipeline.deploy(v1)
    pipeline.start_worker()
    now = datetime.now(UTC)
    first = {"event_id": "v-1", "user_id": "early", "name": "signed_up", "at": now.isoformat()}
    await pipeline.publish([first])
    await asyncio.sleep(3)
    await pipeline.deploy(v2)
    await asyncio.sleep(2)  # the worker polls for new versions
    later = {"event_id": "v-2", "user_id": "late", "name": "signed_up"}
    await pipeline.publish([{**later, "at": datetime.now(UTC).isoformat()}])
    sent = await pipeline.dispatched(timeout=60, until=2)
    assert {(r["user_id"], r["step_id"]) for r in sent} == {("early", "old"), ("late", "new")}


def two_emails_and_a_cap(tmp_path: Path) -> tuple[Path, Path]:
    journey, rules = tmp_path / "two-emails.yaml", tmp_path / "rules.yaml"
    journey.write_text(TWO_EMAILS)
    rules.write_text(ONE_EMAIL_A_DAY)
    return journey, rules


def signed_up(users: list[str]) -> list[dict]:
    at = datetime.now(UTC).isoformat()
    return [{"event_id": f"{u}-1", "user_id": u, "name": "signed_up", "at": at} for u in users]


async def test_a_deployed_frequency_cap_lets_through_what_the_simulator_does(
    pipeline, tmp_path
) -> None:
    journey, rules = two_emails_and_a_cap(tmp_path)
    await pipeline.deploy(journey)  # first: it enters users for events from then on
    await pipeline.deploy(rules)
    events = signed_up(["cap-a", "cap-b", "cap-c"])
    expected = oracle([journey], events, rules)
    assert len(oracle([journey], events)) == 6 and len(expected) == 3  # the first email each

    pipeline.start_worker()
    await pipeline.publish(events)
    await pipeline.dispatched(timeout=90, until=len(expected))
    await asyncio.sleep(5)  # the second emails were due 2 s after the first
    sent = await pipeline.dispatched(timeout=1)
    assert {r["dispatch_id"] for r in sent} == expected
    assert {r["step_id"] for r in sent} == {"first"}


async def test_rules_published_while_the_worker_runs_apply_without_a_restart(
    pipeline, tmp_path
) -> None:
    journey, rules = two_emails_and_a_cap(tmp_path)
    await pipeline.deploy(journey)
    await pipeline.deploy(rules, DRAFT)  # a draft is not run
    pipeline.start_worker()
    early = signed_up(["early"])
    await pipeline.publish(early)
    await pipeline.dispatched(timeout=60, until=2)

    await pipeline.deploy(rules)  # the same file again, published: `journeys deploy` does this
    await asyncio.sleep(2)  # the worker polls for new versions
    late = signed_up(["late"])
    await pipeline.publish(late)
    expected = oracle([journey], early) | oracle([journey], late, rules)
    await pipeline.dispatched(timeout=60, until=len(expected))
    await asyncio.sleep(5)  # late's second email was due 2 s after the first
    sent = await pipeline.dispatched(timeout=1)
    assert {r["dispatch_id"] for r in sent} == expected
    assert sorted({(r["user_id"], r["step_id"]) for r in sent}) == [
        ("early", "first"),
        ("early", "second"),
        ("late", "first"),
    ]
