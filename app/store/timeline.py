"""Every emitted effect in the `timeline` collection, one document per effect id: the durable log
of what happened to each user, read back by the API and by the worker that finds Redis empty."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.errors import BulkWriteError

from app.store.mongo import Database, duplicate_writes


class Timeline:
    def __init__(self, database: Database) -> None:
        self.collection = database["timeline"]

    async def record(self, entries: list[dict[str, Any]]) -> None:
        """Inserts the entries; ones already there (a replayed outbox) are left as they are."""
        if not entries:
            return
        try:
            await self.collection.insert_many(entries, ordered=False)
        except BulkWriteError as error:
            duplicate_writes(error)

    async def sends_since(self, since: datetime) -> list[dict[str, Any]]:
        """The sends recorded at or after `since`, oldest first (a replay claims branch locks in
        the order the sends first claimed them)."""
        cursor = self.collection.find({"kind": "send", "recorded_at": {"$gte": since}})
        return await cursor.sort([("recorded_at", ASCENDING), ("send_at", ASCENDING)]).to_list(None)

    async def send(self, dispatch_id: str, fields: dict[str, int]) -> dict[str, Any] | None:
        """A send's `fields`, by its dispatch id (a send's effect id)."""
        return await self.collection.find_one({"_id": dispatch_id, "kind": "send"}, fields)

    async def entries_into(self, journey_id: str, versions: list[int]) -> int:
        """How many entries into these versions of one journey the timeline holds."""
        return int(
            await self.collection.count_documents(
                {
                    "journey_id": journey_id,
                    "journey_version": {"$in": versions},
                    "kind": "analytics",
                    "event": "entered",
                }
            )
        )

    async def of_user(self, user_id: str) -> list[dict[str, Any]]:
        return await self.collection.find({"user_id": user_id}).to_list(None)
