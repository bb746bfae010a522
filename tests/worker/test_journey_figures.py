"""journey_figures on the real store: a consumer batch counts once however often it is
redelivered and however the redelivery is cut, partitions add up, concurrent counts of one
process all land, and a read sums the hours of its range."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from app.engine import Analytics
from app.store.figures import FigureCounter, JourneyFigures

NINE = datetime(2026, 11, 2, 9, 15, tzinfo=UTC)


def entered(user: str, at: datetime, step: str | None = None, event: str = "entered") -> dict:
    return Analytics(event, "j.1", 1, user, "e1", step, at, "exit event x").to_record()


def batch(first: int, records: list[dict]) -> list[tuple[int, dict]]:
    return list(enumerate(records, start=first))


async def test_a_redelivered_batch_counts_once_and_partitions_add_up(mongo_db) -> None:
    figures = JourneyFigures(mongo_db)
    records = [entered(f"u{i}", NINE + timedelta(minutes=i * 10)) for i in range(10)]
    await figures.add(batch(100, records[:6]), "timeline", partition=0)
    await figures.add(batch(100, records[:6]), "timeline", partition=0)  # redelivered
    await figures.add(batch(100, records[:4]), "timeline", partition=0)  # cut shorter
    await figures.add(batch(104, records[4:]), "timeline", partition=0)  # straddles 105
    await figures.add(batch(104, records[4:]), "timeline", partition=0)
    await figures.add(batch(7, records[:3]), "timeline", partition=1)
    assert await figures.read("j.1") == {1: {"-": {"entered": 13}}}
    # 9:15..10:45 from partition 0 (10), 9:15..9:35 from partition 1 (3)
    assert await figures.read("j.1", 1, since=NINE, until=NINE + timedelta(minutes=30)) == {
        1: {"-": {"entered": 8}}
    }
    assert await figures.read("j.1", 1, since=NINE + timedelta(hours=1)) == {
        1: {"-": {"entered": 5}}
    }
    assert await figures.read("j.1", 2) == {}
    assert await figures.hourly("j.1") == [
        (1, "-", "entered", NINE.replace(minute=0), 8),
        (1, "-", "entered", NINE.replace(minute=0) + timedelta(hours=1), 5),
    ]
    assert await mongo_db["journey_figures"].count_documents({}) == 3


async def test_a_record_counted_at_two_steps_and_odd_names_survive_the_store(mongo_db) -> None:
    figures = JourneyFigures(mongo_db)
    converted = Analytics("converted", "j.1", 1, "u", "e1", None, NINE, variants=(("ab", "b"),))
    records = [entered("u", NINE, "$step.one", event="exited"), converted.to_record()]
    await figures.add(batch(0, records), "timeline", partition=3)
    assert await figures.read("j.1") == {
        1: {
            "$step.one": {"exited": 1, "exited:exit event": 1},
            "-": {"converted": 1},  # once, though it counts at two steps of one document
            "ab": {"variant:b:converted": 1},
        }
    }


async def test_concurrent_counts_of_one_process_all_land(mongo_db) -> None:
    figures = JourneyFigures(mongo_db)
    counter, other = FigureCounter(figures, "sender"), FigureCounter(figures, "sender")
    await asyncio.gather(
        *(counter.count("j.1", 1, "hello", NINE, ["sent"]) for _ in range(40)),
        *(other.count("j.1", 1, "hello", NINE, ["failed", "sent"]) for _ in range(5)),
        counter.count("j.1", 2, "hello", NINE, ["sent"]),
    )
    assert await figures.read("j.1") == {
        1: {"hello": {"sent": 45, "failed": 5}},
        2: {"hello": {"sent": 1}},
    }
    # the two processes' documents for version 1, and one for version 2
    assert await mongo_db["journey_figures"].count_documents({}) == 3


async def test_an_effect_the_timeline_holds_already_is_not_counted_again(mongo_db) -> None:
    """As the projector calls it, before inserting each batch: an outbox emitted twice puts
    the same effect on the topic again, at a later offset."""
    figures = JourneyFigures(mongo_db)
    first = [{"_id": f"effect-{i}", **entered(f"u{i}", NINE)} for i in range(3)]
    await figures.add_new([(0, 10, first[0]), (1, 4, first[1]), (0, 11, first[2])])
    await figures.add_new([(0, 10, first[0]), (1, 4, first[1]), (0, 11, first[2])])  # redelivered
    await mongo_db["timeline"].insert_many(first)  # the projector's insert, after the count
    again = {"_id": "effect-2", **entered("u2", NINE)}  # the outbox emitted again
    fresh = {"_id": "effect-9", **entered("u9", NINE)}
    await figures.add_new([(0, 12, again), (0, 13, fresh)])
    assert await figures.read("j.1") == {1: {"-": {"entered": 4}}}
