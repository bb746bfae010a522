"""What became of each send, in the `deliveries` collection: one document per dispatch id
(unique by `_id`), written by the sender once a recipient is settled. A dispatch id with a
document here is never sent again."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo.errors import DuplicateKeyError

from app.store.mongo import Database


@dataclass(frozen=True, kw_only=True)
class Outcome:
    dispatch_id: str
    outcome: str  # sent | failed | suppressed | duplicate
    user_id: str
    journey_id: str
    step_id: str
    channel: str
    template_id: str
    locale: str | None
    attempts: int
    reason: str | None = None
    # None only in documents written before versions were recorded.
    journey_version: int | None = None
    # The provider's own id of the message when it gives one (an Expo push ticket id).
    provider_id: str | None = None


class Deliveries:
    def __init__(self, database: Database) -> None:
        self.collection = database["deliveries"]

    async def record(self, outcome: Outcome) -> bool:
        """Stores the outcome; False if one was already stored (a concurrent or earlier sender)."""
        document: dict[str, Any] = {
            "_id": outcome.dispatch_id,
            **asdict(outcome),
            "at": datetime.now(UTC),
        }
        del document["dispatch_id"]
        try:
            await self.collection.insert_one(document)
        except DuplicateKeyError:
            return False
        return True

    async def outcomes(self, dispatch_ids: list[str]) -> dict[str, str]:
        """Dispatch ids that already have an outcome, with it."""
        cursor = self.collection.find({"_id": {"$in": dispatch_ids}}, {"outcome": 1})
        return {document["_id"]: document["outcome"] async for document in cursor}

    async def find(self, dispatch_id: str) -> dict[str, Any] | None:
        """One dispatch id's delivery document, or None."""
        return await self.collection.find_one({"_id": dispatch_id})

    async def of_user(self, user_id: str) -> dict[str, dict[str, Any]]:
        """One user's delivery documents by dispatch id."""
        return {d["_id"]: d async for d in self.collection.find({"user_id": user_id})}


class PushTickets:
    """Expo push tickets whose receipts are not read yet, in `push_tickets` (one document per
    ticket id, removed once its receipt is read or it is too old to have one). Kept in MongoDB
    rather than Redis, which keeps nothing."""

    def __init__(self, database: Database) -> None:
        self.collection = database["push_tickets"]

    async def add(self, ticket_id: str, dispatch_id: str, at: datetime) -> None:
        try:
            await self.collection.insert_one(
                {"_id": ticket_id, "dispatch_id": dispatch_id, "at": at}
            )
        except DuplicateKeyError:
            return

    async def pending(self, limit: int) -> dict[str, dict[str, Any]]:
        """Up to `limit` tickets waiting for their receipt, by ticket id."""
        cursor = self.collection.find({}).limit(limit)
        return {document["_id"]: document async for document in cursor}

    async def remove(self, ticket_ids: list[str]) -> None:
        if ticket_ids:
            await self.collection.delete_many({"_id": {"$in": ticket_ids}})
