"""The emitter's `timeline` records through the real timeline projector at once, with no Kafka
between: for tests that drive the batch processor directly and read the timeline collection
right after (the worker's own path through the topic has its live tests)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from app.store.figures import JourneyFigures
from app.store.mongo import Database
from app.store.timeline import Timeline
from app.worker.processor import InputRecord
from app.worker.timeline_projector import SOURCE, TimelineProjector


class ProjectedAtOnce:
    """A `TimelineOut` whose records are in the timeline collection when `publish` returns."""

    def __init__(self, database: Database) -> None:
        self._projector = TimelineProjector(Timeline(database), JourneyFigures(database))
        self._offset = 0

    async def publish(self, records: list[dict[str, Any]]) -> None:
        inputs = []
        for record in records:
            value = orjson.dumps(record)
            inputs.append(InputRecord(SOURCE, 0, self._offset, record["user_id"].encode(), value))
            self._offset += 1
        letters = await self._projector.process(inputs, datetime.now(UTC))
        assert letters == [], [letter.reason for letter in letters]
