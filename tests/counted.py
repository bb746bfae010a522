"""The timeline collection's records counted in `journey_figures` as the timeline projector
counts a batch (one partition, offsets in the order the records were written): for tests that
drive the batch processor directly and read the figures through the API right after. The
emitter inserts the timeline itself on this branch, so this counts after the insert with `add`;
once the timeline projector counts with `add_new` (before its insert), it does this instead."""

from __future__ import annotations

from app.store.figures import JourneyFigures
from app.store.mongo import Database


async def count_timeline(database: Database) -> None:
    documents = await database["timeline"].find({"kind": "analytics"}).to_list(None)
    await JourneyFigures(database).add(list(enumerate(documents)), "timeline", partition=0)
