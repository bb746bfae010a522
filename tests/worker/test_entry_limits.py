"""Entry limits in the worker: the batch processor answers the engine's entry slots from Redis
with the rule the simulator's ledger applies, a redelivered batch spends no second slot, and
the count of entries ever survives Redis losing it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.engine import Analytics, JourneyEngine, UserEvent, load_journey_text
from app.engine.simulator import Simulator
from app.keyspace import Keyspace
from tests.conftest import BOTH_REDIS
from tests.worker.conftest import event, records

pytestmark = BOTH_REDIS

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
JOURNEY = """
id: limited
version: 1
entry: {event: signed_up}
entry_limits: {per_minute: 2, total: 3}
steps:
  hello: {type: message, channel: webhook, template: hello}
"""


def signups(users: list[tuple[str, int]]) -> list[dict]:
    return [event(f"s-{u}", u, "signed_up", T0 + timedelta(seconds=s)) for u, s in users]


async def outcomes(store_db) -> dict[str, str]:
    cursor = store_db["timeline"].find(
        {"kind": "analytics", "event": {"$in": ["entered", "entry_limited"]}}
    )
    return {d["user_id"]: d["event"] async for d in cursor}


def predicted(engine: JourneyEngine, events: list[dict]) -> dict[str, str]:
    simulator = Simulator(engine)
    simulator.feed(UserEvent.from_record(e) for e in events)
    return {
        e.effect.user_id: e.effect.event
        for e in simulator.effects
        if isinstance(e.effect, Analytics) and e.effect.event in ("entered", "entry_limited")
    }


async def test_the_worker_admits_what_the_simulator_admits(
    make_processor, store_db, redis_client, unique
) -> None:
    engine = JourneyEngine([load_journey_text(JOURNEY)])
    processor = await make_processor(engine)
    first = signups([("a", 0), ("b", 10), ("c", 20)])
    later = signups([("d", 60), ("e", 61), ("f", 62)])
    now = T0 + timedelta(minutes=5)
    assert await processor.process(records(*first), now) == []
    # redelivered: the same inputs, recognised; no slot is spent twice
    assert await processor.process(records(*first), now) == []
    # Redis loses the count of entries ever: it is rebuilt from the timeline
    await redis_client.delete(Keyspace(unique).entries_ever("limited"))
    assert await processor.process(records(*later, offset=3), now) == []
    got = await outcomes(store_db)
    assert got == predicted(engine, first + later)
    assert got == {
        "a": "entered",
        "b": "entered",
        "c": "entry_limited",  # 2 per minute
        "d": "entered",  # the third entry ever
        "e": "entry_limited",  # 3 in total
        "f": "entry_limited",
    }


async def test_an_input_replayed_after_its_answer_gets_the_same_answer(
    make_processor, store_db, redis_client, unique
) -> None:
    """A crash after Redis answered and before the user's write: the input comes again, and
    its slot's answer is the one it had, whatever the counts say now."""
    engine = JourneyEngine([load_journey_text(JOURNEY)])
    processor = await make_processor(engine)
    keys = Keyspace(unique)
    await redis_client.set(keys.entry_answer("limited", "limited|a|event:s-a"), 1)
    await redis_client.set(keys.entries_ever("limited"), 3)  # full since
    assert await processor.process(records(*signups([("a", 0), ("b", 1)])), T0) == []
    assert await outcomes(store_db) == {"a": "entered", "b": "entry_limited"}
