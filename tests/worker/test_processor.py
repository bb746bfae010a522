"""The batch processor on the real MongoDB-wire server and Redis: one write per changed user per
batch, sends buffered once, redelivered inputs change nothing, bad records come back as dead
letters while the good ones around them are applied."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import orjson

from app.engine import JourneyEngine, load_journey_text
from app.worker.emitter import effect_id
from app.worker.processor import InputRecord
from tests.worker.conftest import event, records

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


async def test_one_write_per_user_per_batch_and_sends_buffered(processor) -> None:
    batch = records(
        event(
            "e1",
            "u-1",
            "signed_up",
            T0,
            attributes={"email": "a@x.test", "first_name": "Ada", "role": "teacher"},
        ),
        event("e2", "u-1", "opened_app", T0 + timedelta(minutes=1)),
        event(
            "e3",
            "u-2",
            "signed_up",
            T0,
            attributes={"email": "b@x.test", "first_name": "Bo", "role": "teacher"},
        ),
    )
    letters = await processor.process(batch, T0 + timedelta(minutes=2))
    assert letters == []
    assert processor.store.writes == 2  # two users, three inputs
    assert await processor.buffer.pending() == 2  # a welcome email each
    stored = await processor.store.load_many(["u-1", "u-2"])
    assert stored["u-1"].state.attributes["first_name"] == "Ada"
    assert stored["u-1"].source_offsets == {"user-events": {"0": 1}}
    assert stored["u-1"].state.next_due_at() is not None


async def test_redelivered_batch_changes_nothing(processor) -> None:
    batch = records(
        event("e1", "u-1", "signed_up", T0, attributes={"email": "a@x.test", "role": "teacher"})
    )
    await processor.process(batch, T0)
    before = (await processor.store.load_many(["u-1"]))["u-1"]
    writes = processor.store.writes
    assert await processor.process(batch, T0 + timedelta(seconds=5)) == []
    after = (await processor.store.load_many(["u-1"]))["u-1"]
    assert processor.store.writes == writes
    assert after.state.to_document() == before.state.to_document()
    assert await processor.buffer.pending() == 1


async def test_bad_records_are_dead_lettered_and_the_rest_applied(processor) -> None:
    good = records(
        event("e1", "u-1", "signed_up", T0, attributes={"email": "a@x.test", "role": "teacher"})
    )
    bad = [
        InputRecord("user-events", 0, 7, b"u-9", b"{not json"),
        InputRecord("user-events", 0, 8, b"u-9", orjson.dumps({"user_id": "u-9"})),
        InputRecord("user-events", 0, 9, b"u-9", b"x" * (64 * 1024 + 1)),
    ]
    letters = await processor.process([bad[0], *good, bad[1], bad[2]], T0)
    assert [letter.offset for letter in letters] == [7, 8, 9]
    assert "not JSON" in letters[0].reason
    assert "'event_id' is a required property" in letters[1].reason
    assert "at most 65536 bytes" in letters[2].reason
    assert letters[1].original == bad[1].value
    assert await processor.buffer.pending() == 1


async def test_a_batch_of_many_users_commits_in_bounded_bulk_commands(processor) -> None:
    """A batch spanning 240 users writes each once, in bulk commands of MONGO_BULK_OPS."""
    first = [
        event(f"a{i}", f"many-{i}", "signed_up", T0, attributes={"role": "teacher"})
        for i in range(240)
    ]
    await processor.process(records(*first), T0)
    second = [
        event(f"b{i}", f"many-{i}", "opened_app", T0 + timedelta(minutes=1)) for i in range(240)
    ]
    writes = processor.store.writes
    await asyncio.wait_for(processor.process(records(*second, offset=240), T0), 60)
    assert processor.store.writes - writes == 240


async def test_an_emitted_outbox_leaves_with_the_users_next_write(processor) -> None:
    signed_up = event(
        "e1", "u-1", "signed_up", T0, attributes={"email": "a@x.test", "role": "teacher"}
    )
    await processor.process(records(signed_up), T0)
    first = (await processor.store.load_many(["u-1"]))["u-1"]
    assert any(effect["kind"] == "send" for effect in first.outbox)
    later = T0 + timedelta(minutes=1)
    await processor.process(records(event("e2", "u-1", "opened_app", later), offset=1), later)
    second = (await processor.store.load_many(["u-1"]))["u-1"]
    assert second.version > first.version
    assert not {effect_id(e) for e in first.outbox} & {effect_id(e) for e in second.outbox}


async def test_an_outbox_not_marked_as_emitted_is_kept_and_emitted_again(
    processor, redis_client, unique
) -> None:
    signed_up = event(
        "e1", "u-1", "signed_up", T0, attributes={"email": "a@x.test", "role": "teacher"}
    )
    await processor.process(records(signed_up), T0)
    first = (await processor.store.load_many(["u-1"]))["u-1"]
    await redis_client.set(f"{unique}:emitted:{{u-1}}", "the digest of another outbox")
    await redis_client.delete(*await redis_client.keys(f"{unique}:send-buffer*"))
    later = T0 + timedelta(minutes=1)
    await processor.process(records(event("e2", "u-1", "opened_app", later), offset=1), later)
    second = (await processor.store.load_many(["u-1"]))["u-1"]
    assert {effect_id(e) for e in first.outbox} <= {effect_id(e) for e in second.outbox}
    assert await processor.buffer.pending() == 1  # the welcome email, buffered again


CART = """
id: cart
version: 1
entry: {event: added_to_cart}
steps:
  wait: {type: wait_for, event: purchased, timeout: 1h, performed: thanks, timed_out: remind}
  thanks: {type: message, channel: email, template: thanks}
  remind: {type: message, channel: email, template: remind}
"""


async def test_a_users_inputs_apply_by_time_events_before_timers_at_equal_times(
    make_processor,
) -> None:
    processor = await make_processor(JourneyEngine([load_journey_text(CART)]))
    await processor.process(records(event("e1", "u-1", "added_to_cart", T0)), T0)
    (timer,) = (await processor.store.load_many(["u-1"]))["u-1"].state.timers
    fired = {"kind": "timer", "user_id": "u-1", "timer_id": timer.timer_id}
    fired["due_at"] = timer.due_at.isoformat()
    timer_record = InputRecord("timers", 0, 0, b"u-1", orjson.dumps(fired))
    # The timer came first, but the purchase at exactly its due time is in time.
    purchase = records(event("e2", "u-1", "purchased", T0 + HOUR), offset=1)
    assert await processor.process([timer_record, *purchase], T0 + HOUR) == []
    user = (await processor.store.load_many(["u-1"]))["u-1"]
    assert [e["step_id"] for e in user.outbox if e["kind"] == "send"] == ["thanks"]


async def test_inputs_applied_out_of_offset_order_are_all_applied_once(make_processor) -> None:
    processor = await make_processor(JourneyEngine([load_journey_text(CART)]))
    later, earlier = T0 + 2 * HOUR, T0 + HOUR
    batch = records(
        event("e1", "u-1", "added_to_cart", later), event("e2", "u-1", "viewed", earlier)
    )
    await processor.process(batch, later)
    user = (await processor.store.load_many(["u-1"]))["u-1"]
    assert user.state.events["viewed"]["count"] == 1
    assert user.state.events["added_to_cart"]["count"] == 1
    assert user.source_offsets == {"user-events": {"0": 1}}
    writes = processor.store.writes
    assert await processor.process(batch, later) == []  # redelivered: both skipped
    assert processor.store.writes == writes


async def test_an_event_from_another_era_is_dead_lettered_with_the_reason(processor) -> None:
    received = T0 + timedelta(minutes=1)
    ancient = event("e1", "u-1", "signed_up", datetime(1970, 1, 1, tzinfo=UTC))
    good = event("e2", "u-2", "signed_up", T0, attributes={"email": "b@x.test", "role": "teacher"})
    batch = [
        InputRecord("user-events", 0, i, e["user_id"].encode(), orjson.dumps(e), received)
        for i, e in enumerate((ancient, good))
    ]
    letters = await processor.process(batch, received)
    assert [letter.offset for letter in letters] == [0]
    assert "1970-01-01T00:00:00Z" in letters[0].reason
    assert "EVENT_MAX_PAST_SECONDS" in letters[0].reason and "u-1" not in letters[0].reason
    assert await processor.buffer.pending() == 1  # u-2's welcome
