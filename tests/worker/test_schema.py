"""The shard keys and indexes of app/store/schema.py against the README, the real server's indexes
after start-up, and the queries the stores send (watched on the wire): hot-path queries name
their collection's shard key (one shard), and every other query's filter leads with an index."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from app.store.deliveries import Deliveries, Outcome, PushTickets
from app.store.figures import JourneyFigures
from app.store.schema import SCHEMA, SHARD_KEYS, ensure_indexes
from app.store.suppressions import SuppressionList
from app.store.timeline import Timeline
from app.store.users import StoredUser, UserCommit, UserStore

README = Path(__file__).resolve().parents[2] / "README.md"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_the_readme_lists_every_collection_with_its_shard_key() -> None:
    section = README.read_text().split("## Running at scale", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \|", section, re.MULTILINE)
    documented = {name: key.strip() for name, key in rows}
    expected = {
        name: "unsharded" if key is None else f'`{{{key[0]}: "{key[1]}"}}`'
        for name, key in SHARD_KEYS.items()
    }
    assert documented == expected


async def test_start_up_creates_every_index_and_each_shard_key_has_one(watched) -> None:
    database, _ = watched
    await ensure_indexes(database)
    await ensure_indexes(database)  # a second process starting changes nothing
    for collection in SCHEMA:
        await database[collection.name].insert_one({"_id": "x"})  # `_id`'s index comes with it
        information = await database[collection.name].index_information()
        created = {
            tuple((field, int(order)) for field, order in i["key"]) for i in information.values()
        }
        assert set(collection.indexes) <= created, collection.name
        if collection.shard_key is not None:
            leading = {keys[0][0] for keys in created}
            assert collection.shard_key[0] in leading, collection.name


def pinned(value: Any) -> bool:
    """True when a filter's or a document's value is known values (an equality or an `$in`)."""
    return value is not None and not (isinstance(value, dict) and set(value) - {"$in"})


def targets(shape: dict[str, Any], field: str) -> bool:
    if field in shape:
        return pinned(shape[field])
    return any(targets(part, field) for part in shape.get("$and", []))


async def test_hot_path_queries_name_the_shard_key(watched) -> None:
    """What the worker does per batch, the sender per record and the API per user."""
    database, commands = watched
    await ensure_indexes(database)
    users, timeline = UserStore(database, 50), Timeline(database)
    deliveries, tickets = Deliveries(database), PushTickets(database)
    suppressions = SuppressionList(database)
    commands.seen.clear()

    loaded = await users.load_many(["ada", "bo"])
    await users.commit_many([UserCommit(user, 0, 3) for user in loaded.values()])
    stored = await users.load_many(["ada"])
    await users.commit_many([UserCommit(stored["ada"], stored["ada"].version, 3)])
    await users.lease([StoredUser.new("ada")], NOW, NOW + timedelta(seconds=30))
    await users.subscription_states(["ada", "bo"])
    await timeline.record([{"_id": "d1", "user_id": "ada", "kind": "send", "dispatch_id": "d1"}])
    await timeline.of_user("ada")
    outcome = Outcome(
        dispatch_id="d1",
        outcome="sent",
        user_id="ada",
        journey_id="j",
        step_id="s",
        channel="email",
        template_id="t",
        locale="en",
        attempts=1,
    )
    await deliveries.outcomes(["d1", "d2"])
    await deliveries.record(outcome)
    await deliveries.find("d1")
    await suppressions.reasons("email", ["ada@example.com"])
    await suppressions.add("email", "ada@example.com", "bounce", NOW)
    await suppressions.opted_out("news", ["ada"])
    await suppressions.opt_out("ada", "news", NOW)
    await tickets.add("ticket-1", "d1", NOW)
    await tickets.remove(["ticket-1"])

    seen = {collection for collection, _, _ in commands.seen}
    assert seen == {
        "users",
        "timeline",
        "deliveries",
        "suppressions",
        "topic_opt_outs",
        "push_tickets",
        "time_zones",
    }
    # A zone no user written by this process had is recorded once, not per write (unsharded).
    assert [name for c, name, _ in commands.seen if c == "time_zones"] == ["update"]
    for collection, name, shapes in commands.seen:
        field = SHARD_KEYS[collection]
        if collection == "time_zones":
            continue
        assert field is not None
        for shape in shapes:
            assert targets(shape, field[0]), (collection, name, shape)


async def test_every_other_query_leads_with_an_indexed_field(watched) -> None:
    """The scans (scheduler, timer sweep, Redis recovery, the flow page's figures) and the
    reads that cross shards are served by an index, not a collection scan."""
    database, commands = watched
    await ensure_indexes(database)
    users, timeline, deliveries = UserStore(database, 50), Timeline(database), Deliveries(database)
    commands.seen.clear()

    await users.claim_due([0, 1], NOW, NOW + timedelta(seconds=30), 100)
    _ = [user async for user in users.users_with_timers()]
    await users.user_ids_matching({"timezone": "Europe/Paris", "plan": "pro"}, "ada", 100)
    await users.time_zones()
    await timeline.sends_since(NOW)
    await timeline.send("d1", {"user_id": 1})
    await timeline.entries_into("j", [1, 2])
    await deliveries.of_user("ada")
    await JourneyFigures(database).read("j", 1, NOW, NOW + timedelta(hours=2))
    await JourneyFigures(database).waiting("j", 1)

    indexed = {
        collection.name: {"_id"} | {keys[0][0] for keys in collection.indexes}
        for collection in SCHEMA
    }
    # time_zones(): the once-per-database read of earlier users' zones (a marker in
    # schedule_runs, the distinct), then the whole of the small time_zones collection.
    assert len(commands.seen) == 13
    for collection, name, shapes in commands.seen:
        if (collection, name) == ("time_zones", "find"):
            continue
        for shape in shapes:
            fields = set(shape) | {f for part in shape.get("$and", []) for f in part}
            assert fields & indexed[collection], (collection, name, shape)
