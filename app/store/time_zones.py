"""The time zones users live in, in the `time_zones` collection (one document per zone, a few
hundred at most), kept as users are written: the scheduler enters a recurring journey's audience
zone by zone, and finding the zones must not scan the users (a `distinct` over every user each
round was a quarter of FerretDB's work during a burst). The zones of users stored before this
collection existed are found once per database (`UserStore.time_zones`)."""

from __future__ import annotations

from collections.abc import Iterable

from pymongo import UpdateOne

from app.store.mongo import Database
from app.store.schedule_runs import ScheduleRuns

# A user without a time zone lives in UTC, as the engine reads it.
DEFAULT_ZONE = "UTC"
BACKFILL_RUN = "time-zones-of-earlier-users"


class TimeZones:
    def __init__(self, database: Database) -> None:
        self.collection = database["time_zones"]
        self._runs = ScheduleRuns(database)
        self._recorded: set[str] = set()  # by this process: not written again

    async def record(self, zones: Iterable[str | None]) -> None:
        """Records the zones this process has not recorded yet: an upsert each, so a handful
        per process lifetime, not one per user written."""
        new = {zone or DEFAULT_ZONE for zone in zones} - self._recorded
        if not new:
            return
        await self.collection.bulk_write(
            [UpdateOne({"_id": zone}, {"$set": {"zone": zone}}, upsert=True) for zone in new],
            ordered=False,
        )
        self._recorded |= new

    async def backfilled(self) -> bool:
        """Whether the zones of users stored before zones were recorded are recorded."""
        run = await self._runs.progress(BACKFILL_RUN)
        return bool(run and run.get("done"))

    async def mark_backfilled(self) -> None:
        await self._runs.save_progress(BACKFILL_RUN, None, True)

    async def all(self) -> list[str]:
        """Every recorded zone, and UTC."""
        zones = {document["_id"] async for document in self.collection.find({}, {"_id": 1})}
        return sorted(zones | {DEFAULT_ZONE})
