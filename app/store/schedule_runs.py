"""The recurring journeys' progress in the `schedule_runs` collection: per journey, how far its
ticks were checked; per tick and time zone, the last user entered and whether the run is done,
so a leader that dies mid-way is resumed by the next one."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.store.mongo import Database


class ScheduleRuns:
    def __init__(self, database: Database) -> None:
        self.collection = database["schedule_runs"]

    async def checked_until(self, journey_id: str) -> datetime | None:
        marker = await self.collection.find_one({"_id": journey_id})
        return marker["checked_until"] if marker else None

    async def set_checked_until(self, journey_id: str, until: datetime) -> None:
        await self.collection.update_one(
            {"_id": journey_id}, {"$set": {"checked_until": until}}, upsert=True
        )

    async def progress(self, run_id: str) -> dict[str, Any] | None:
        """A run's `after` (the last user id entered) and `done`, if it has started."""
        return await self.collection.find_one({"_id": run_id})

    async def save_progress(self, run_id: str, after: str | None, done: bool) -> None:
        await self.collection.update_one(
            {"_id": run_id}, {"$set": {"after": after, "done": done}}, upsert=True
        )
