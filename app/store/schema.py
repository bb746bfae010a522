"""Every MongoDB collection in one place: its shard key and its indexes. Every process creates
every index at start-up (`ensure_indexes`, idempotent), and `journeys shard-commands` prints the
mongosh commands that shard a database by these keys. A shard key needs a supporting index: its
field leads one of the collection's indexes (`_id` always has one); a hashed key's own hashed
index is created by the commands, as FerretDB has no hashed indexes.

The shard key is the user id wherever a hot-path query knows it (worker per batch, sender per
record, API per user), so those queries go to one shard: `users` by `_id` (the user id) and
`timeline` by `user_id`. Collections whose hot-path queries name their documents by `_id` only
(a dispatch id, an address, a ticket id) are sharded by a hash of `_id`. The definitions
(`journeys`, `rules`), `schedule_runs` and `time_zones` hold a few documents each and stay
unsharded, on the database's primary shard. See the README's "Running at scale" for what each
key costs."""

from __future__ import annotations

from dataclasses import dataclass

from pymongo import ASCENDING

from app.store.mongo import Database

IndexKeys = tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class CollectionSchema:
    name: str
    # The shard key as mongosh writes it ({field: "hashed"}); None: unsharded.
    shard_key: tuple[str, str] | None
    indexes: tuple[IndexKeys, ...]


def _index(*fields: str) -> IndexKeys:
    return tuple((field, ASCENDING) for field in fields)


SCHEMA: tuple[CollectionSchema, ...] = (
    CollectionSchema(
        "users",
        ("_id", "hashed"),
        (
            _index("next_due_at"),  # the Redis recovery's users with timers
            _index("partition", "next_due_at"),  # the timer pump's sweep of its partitions
            _index("timezone", "_id"),  # the scheduler: zones, then an audience in id order
        ),
    ),
    CollectionSchema(
        "timeline",
        ("user_id", "hashed"),
        (
            _index("user_id"),  # a user's timeline (the API)
            _index("journey_id", "journey_version"),  # a journey's figures and conversions
            _index("kind", "recorded_at"),  # the Redis recovery's recent sends
        ),
    ),
    CollectionSchema("deliveries", ("_id", "hashed"), (_index("user_id"),)),
    CollectionSchema("push_tickets", ("_id", "hashed"), ()),
    CollectionSchema("suppressions", ("_id", "hashed"), ()),
    CollectionSchema("topic_opt_outs", ("_id", "hashed"), (_index("topic", "user_id"),)),
    # A journey's hourly counts (app/store/figures.py): written in batches, read by journey and
    # hours, so a page of figures asks one shard.
    CollectionSchema(
        "journey_figures",
        ("journey_id", "hashed"),
        (_index("journey_id", "journey_version", "hour"),),
    ),
    CollectionSchema("journeys", None, (_index("journey_id", "version"),)),
    CollectionSchema("rules", None, (_index("status", "version"),)),
    CollectionSchema("schedule_runs", None, ()),
    CollectionSchema("time_zones", None, ()),
)
SHARD_KEYS: dict[str, tuple[str, str] | None] = {c.name: c.shard_key for c in SCHEMA}


async def ensure_indexes(database: Database) -> None:
    """Creates every collection's indexes (those already there are left as they are)."""
    for collection in SCHEMA:
        for keys in collection.indexes:
            await database[collection.name].create_index(list(keys))


def shard_commands(database_name: str) -> str:
    """The mongosh script that shards `database_name` by `SHARD_KEYS`, run against a mongos
    once the shards are added; running it again changes nothing."""
    lines = [
        "// Shards a Journeys database by the keys in app/store/schema.py",
        "// (printed by `journeys shard-commands`; run with mongosh against a mongos).",
        f'sh.enableSharding("{database_name}");',
        f'const journeysDb = db.getSiblingDB("{database_name}");',
    ]
    for collection in SCHEMA:
        if collection.shard_key is None:
            lines.append(f"// {collection.name}: unsharded (a few documents, on the primary shard)")
            continue
        field, kind = collection.shard_key
        key = f'{{"{field}": "{kind}"}}'
        lines.append(f'journeysDb.getCollection("{collection.name}").createIndex({key});')
        lines.append(f'sh.shardCollection("{database_name}.{collection.name}", {key});')
    return "\n".join(lines) + "\n"
