"""Recurring journeys (the weekly summary): at each cron tick, evaluated in each time zone the users
live in, the leader worker pages through the users matching the journey's audience filter and
publishes one `scheduled_entry` per user to `timers`, on the user's partition (set explicitly).
Progress is kept in `schedule_runs` after every page, so a leader that dies mid-way is resumed
by the next one; the engine also refuses a tick it already applied, so a page published twice
enters nobody twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
from aiokafka import AIOKafkaProducer
from croniter import croniter

from app.engine import JourneyEngine, zone_named
from app.engine.definitions import ScheduleEntry
from app.engine.effects import utc_text
from app.store.mongo import Database
from app.store.schedule_runs import ScheduleRuns
from app.store.users import UserStore
from app.worker.partitions import partition_of

LOOKBACK = timedelta(minutes=5)  # how far back a first round looks for a missed tick


class Scheduler:
    def __init__(
        self,
        database: Database,
        store: UserStore,
        producer: AIOKafkaProducer,
        timers_topic: str,
        partitions: int,
        page_size: int = 500,
    ) -> None:
        self._runs = ScheduleRuns(database)
        self._store = store
        self._producer = producer
        self._topic = timers_topic
        self._partitions = partitions
        self._page_size = page_size
        self.entries_published = 0

    async def run(self, engine: JourneyEngine, now: datetime, max_pages: int | None = None) -> int:
        """Publishes the entries of every tick due by `now`; returns how many. `max_pages`
        bounds one round (the rest is resumed by the next round)."""
        published, pages = 0, [0]
        scheduled = [
            (journey, journey.entry)
            for journey in engine.current.values()
            if isinstance(journey.entry, ScheduleEntry)
        ]
        if not scheduled:
            return 0  # nothing to read while no journey is scheduled
        zones = await self._store.time_zones()
        for journey, entry in scheduled:
            checked = await self._runs.checked_until(journey.id)
            since = checked.astimezone(UTC) if checked else now - LOOKBACK
            for zone in zones:
                for tick in _ticks(entry.cron, zone, since, now):
                    count, finished = await self._enter_tick(
                        engine, journey.id, zone, tick, now, pages, max_pages
                    )
                    published += count
                    if not finished:
                        return published
            await self._runs.set_checked_until(journey.id, now)
        return published

    async def _enter_tick(
        self,
        engine: JourneyEngine,
        journey_id: str,
        zone: str,
        tick: datetime,
        now: datetime,
        pages: list[int],
        max_pages: int | None,
    ) -> tuple[int, bool]:
        run_id = f"{journey_id}:{zone}:{utc_text(tick)}"
        progress = await self._runs.progress(run_id)
        if progress and progress.get("done"):
            return 0, True
        after = progress.get("after") if progress else None
        in_zone = {"timezone": {"$in": [zone, None]}} if zone == "UTC" else {"timezone": zone}
        audience = engine.audience_filter(journey_id, now)
        query = {"$and": [audience, in_zone]} if audience else in_zone
        published = 0
        while True:
            if max_pages is not None and pages[0] >= max_pages:
                return published, False
            user_ids = await self._store.user_ids_matching(query, after, self._page_size)
            pages[0] += 1
            futures = []
            for user_id in user_ids:
                record = {"kind": "scheduled_entry", "user_id": user_id, "journey_id": journey_id,
                          "tick": utc_text(tick)}  # fmt: skip
                futures.append(
                    await self._producer.send(
                        self._topic,
                        orjson.dumps(record),
                        key=user_id.encode(),
                        partition=partition_of(user_id, self._partitions),
                    )
                )
            for future in futures:
                await future
            published += len(user_ids)
            self.entries_published += len(user_ids)
            done = len(user_ids) < self._page_size
            after = user_ids[-1] if user_ids else after
            await self._runs.save_progress(run_id, after, done)
            if done:
                return published, True


def _ticks(cron: str, zone: str, since: datetime, until: datetime) -> list[datetime]:
    ticks, schedule = [], croniter(cron, since.astimezone(zone_named(zone)))
    while (tick := schedule.get_next(datetime)) <= until:
        ticks.append(tick.astimezone(UTC))
    return ticks
