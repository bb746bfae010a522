"""Inputs for a journey version the worker does not have (a draft, or one it has not loaded
yet), through the batch processor on the real MongoDB-wire server and Redis: parked in the user
document in order, one dead letter and a metric, tried again with backoff (not in a tight loop),
and applied once the version is there: nothing lost, nothing sent twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from app.engine import JourneyEngine, load_journey_text
from app.store.users import PARKED_RETRY_TIMER
from app.streams.producer import new_producer
from app.worker.due_index import DueIndex
from app.worker.metrics import WorkerMetrics
from app.worker.processor import InputRecord
from app.worker.timer_pump import TimerPump
from tests.kafka_reader import read_records
from tests.worker.conftest import event, records

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
JOURNEY = load_journey_text(
    "id: j\nversion: 1\nentry: {event: signed_up}\nsteps:\n"
    "  wait: {type: delay, duration: 1h, next: hello}\n"
    "  hello: {type: message, channel: webhook, template: generic_offer}\n"
)


def timer(timer_id: str, due_at: datetime, offset: int) -> InputRecord:
    value = {
        "kind": "timer",
        "user_id": "u-1",
        "timer_id": timer_id,
        "due_at": due_at.isoformat(),
        "fired_at": due_at.isoformat(),
    }
    return InputRecord("timers", 0, offset, b"u-1", orjson.dumps(value))


async def test_an_input_for_a_missing_version_waits_parked_and_resumes_once(
    make_processor,
) -> None:
    engines = {"now": JourneyEngine([JOURNEY])}
    processor = await make_processor(JourneyEngine([JOURNEY]))
    processor._engine = lambda: engines["now"]  # what the worker's journey refresh swaps
    signup = event("e1", "u-1", "signed_up", T0, attributes={"email": "a@x.test"})
    assert await processor.process(records(signup), T0) == []
    (pending,) = (await processor.store.load_many(["u-1"]))["u-1"].state.timers

    engines["now"] = JourneyEngine([])  # the version is gone from this worker
    due = pending.due_at
    later = event("e2", "u-1", "opened_app", due + timedelta(seconds=1))
    first = [timer(pending.timer_id, due, 0), *records(later, offset=1)]
    letters = await processor.process(first, due + timedelta(seconds=2))
    (letter,) = letters
    assert "journey j version 1 is not loaded" in letter.reason and "parked" in letter.reason
    assert "a@x.test" not in letter.reason and "u-1" not in letter.reason
    assert (processor._metrics.versions_missing, processor._metrics.inputs_parked) == (1, 2)
    user = (await processor.store.load_many(["u-1"]))["u-1"]
    assert [r["offset"] for r in user.parked.records] == [0, 1]
    assert user.parked.retry_at == due + timedelta(seconds=3)  # 1 s after the first try
    assert user.next_due_at() == user.parked.retry_at
    assert "opened_app" not in user.state.events  # held behind the parked timer, in order

    # Tried again, still missing: no new dead letter, a longer wait; a redelivery adds nothing.
    retry = timer(PARKED_RETRY_TIMER, user.parked.retry_at, 2)
    again = [retry, *first]
    assert await processor.process(again, due + timedelta(seconds=4)) == []
    user = (await processor.store.load_many(["u-1"]))["u-1"]
    assert len(user.parked.records) == 2 and user.parked.attempts == 2
    assert user.parked.retry_at == due + timedelta(seconds=6)
    assert processor._metrics.versions_missing == 1 and await processor.buffer.pending() == 0

    engines["now"] = JourneyEngine([JOURNEY])  # loaded again
    retry = timer(PARKED_RETRY_TIMER, user.parked.retry_at, 3)
    assert await processor.process([retry], due + timedelta(seconds=7)) == []
    user = (await processor.store.load_many(["u-1"]))["u-1"]
    assert user.parked.records == [] and user.next_due_at() is None
    assert user.state.events["opened_app"]["count"] == 1
    assert await processor.buffer.pending() == 1  # the delayed message, once
    assert await processor.process([*again, retry], due + timedelta(seconds=8)) == []
    assert await processor.buffer.pending() == 1


async def test_the_timer_pump_wakes_a_parked_user_at_its_retry_time_only(
    servers, make_processor, redis_client, new_topic, unique
) -> None:
    """While inputs are parked, the user's own timers wait behind them: the pump publishes one
    retry record when the retry is due, not the overdue timer over and over."""
    engines = {"now": JourneyEngine([JOURNEY])}
    processor = await make_processor(JourneyEngine([JOURNEY]))
    processor._engine = lambda: engines["now"]
    await processor.process(records(event("e1", "u-1", "signed_up", T0)), T0)
    (pending,) = (await processor.store.load_many(["u-1"]))["u-1"].state.timers
    engines["now"] = JourneyEngine([])
    now = pending.due_at + timedelta(seconds=1)
    await processor.process([timer(pending.timer_id, pending.due_at, 0)], now)

    topic = await new_topic("timers", partitions=8)
    producer = new_producer(servers)
    await producer.start()
    try:
        pump = TimerPump(
            processor.store, DueIndex(redis_client, unique), producer, topic, 8, WorkerMetrics()
        )
        partitions = range(8)
        assert await pump.pump(partitions, now + timedelta(milliseconds=500)) == 0
        assert await pump.pump(partitions, now + timedelta(seconds=1)) == 1
    finally:
        await producer.stop()
    (fired,) = await read_records(servers.kafka_bootstrap, topic, 1)
    assert (fired["timer_id"], fired["due_at"]) == (
        PARKED_RETRY_TIMER,
        (now + timedelta(seconds=1)).isoformat().replace("+00:00", "Z"),
    )
