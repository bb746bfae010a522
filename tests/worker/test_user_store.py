"""How a user document holds the outbox: one binary value, read back as it was written, and
documents written before it was packed still load."""

from __future__ import annotations

from app.config import Settings
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
