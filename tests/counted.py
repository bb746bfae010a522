"""The timeline collection's records counted in `journey_figures` as the timeline projector
counts a batch (one partition, offsets in the order the records were written): for tests that
drive the batch processor directly and read the figures through the API right after."""

from __future__ import annotations

from app.store.figures import JourneyFigures
from app.store.mongo import Database


async def count_timeline(database: Database) -> None:
    documents = await database["timeline"].find({"kind": "analytics"}).to_list(None)
    await JourneyFigures(database).add(list(enumerate(documents)), "timeline", partition=0)
