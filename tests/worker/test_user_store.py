"""How a user document holds the outbox, the engine's recent sends and applied inputs: one binary
value each, read back as it was written, and documents written before they were packed still
load."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.config import Settings
from app.engine import UserState
from app.store.users import StoredUser, UserCommit, UserStore

OUTBOX = [
    {"kind": "analytics", "event": "entered", "journey_id": "j", "at": "2026-11-02T09:15:00Z"},
    {"kind": "send", "dispatch_id": "d1", "variables": {"first_name": "Ada"}, "branch": ["e", 1]},
]


async def test_the_outbox_is_one_binary_value_read_back_as_written(
    settings: Settings, store_db
) -> None:
    store = UserStore(store_db, settings.mongo_bulk_ops)
    user = StoredUser.new("u-1")
    user.outbox = OUTBOX
    assert await store.commit_many([UserCommit(user, 0, 3)]) == set()
    raw = await store.collection.find_one({"_id": "u-1"})
    assert isinstance(raw["outbox"], bytes)
    assert (await store.load_many(["u-1"]))["u-1"].outbox == OUTBOX


async def test_a_document_with_the_outbox_as_a_list_still_loads(
    settings: Settings, store_db
) -> None:
    store = UserStore(store_db, settings.mongo_bulk_ops)
    document = UserCommit(StoredUser.new("u-2"), 0, 3).document()
    await store.collection.insert_one({**document, "outbox": OUTBOX})
    assert (await store.load_many(["u-2"]))["u-2"].outbox == OUTBOX


def full_state(user_id: str) -> UserState:
    state = UserState.new(user_id)
    state.version = 3
    state.sends = [
        {"channel": "email", "at": datetime(2026, 11, 2, 9, 15, 0, 123000, tzinfo=UTC)},
        {"channel": "sms", "at": datetime(2026, 11, 2, 9, 16, tzinfo=UTC)},
    ]
    state.applied = ["event:e1", "timer:u-1:t1", "tick:j:2026-11-02T09:00:00Z"]
    return state


async def test_sends_and_applied_are_one_binary_value_each_read_back_as_written(
    settings: Settings, store_db
) -> None:
    store = UserStore(store_db, settings.mongo_bulk_ops)
    state = full_state("u-3")
    assert await store.commit_many([UserCommit(StoredUser("u-3", state), 0, 3)]) == set()
    raw = await store.collection.find_one({"_id": "u-3"})
    assert isinstance(raw["sends"], bytes) and isinstance(raw["applied"], bytes)
    loaded = (await store.load_many(["u-3"]))["u-3"].state
    assert loaded.sends == state.sends and loaded.applied == state.applied
    assert all(send["at"].utcoffset() == timedelta(0) for send in loaded.sends)
    (document,) = (await store.load_documents(["u-3", "nobody"])).values()
    assert StoredUser.from_bson(document).state.to_document() == state.to_document()


async def test_a_document_with_sends_and_applied_as_lists_still_loads(
    settings: Settings, store_db
) -> None:
    store = UserStore(store_db, settings.mongo_bulk_ops)
    state = full_state("u-4")
    document = UserCommit(StoredUser("u-4", state), 0, 3).document()
    await store.collection.insert_one({**document, "sends": state.sends, "applied": state.applied})
    loaded = (await store.load_many(["u-4"]))["u-4"].state
    assert loaded.sends == state.sends and loaded.applied == state.applied


async def test_a_replace_that_missed_is_a_conflict_even_when_the_store_has_its_version(
    settings: Settings, store_db
) -> None:
    store = UserStore(store_db, settings.mongo_bulk_ops)
    assert (
        await store.commit_many([UserCommit(StoredUser("u-5", full_state("u-5")), 0, 3)]) == set()
    )
    ours, theirs = [(await store.load_many(["u-5"]))["u-5"] for _ in range(2)]
    theirs.state.attributes["plan"] = "pro"
    for user in (ours, theirs):
        user.state.version += 1  # both computed version 4 from version 3
    assert await store.commit_many([UserCommit(theirs, 3, 3)]) == set()
    assert await store.commit_many([UserCommit(ours, 3, 3)]) == {"u-5"}
    assert (await store.load_many(["u-5"]))["u-5"].state.attributes == {"plan": "pro"}
