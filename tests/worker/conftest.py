"""The batch processor wired to the real MongoDB-wire server and Redis, and helpers to feed it."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import orjson
import pytest

from app.authoring.files import load_journey
from app.engine import JourneyEngine
from app.store.schema import ensure_indexes
from app.store.users import UserStore
from app.worker.branch_lock import BranchLock
from app.worker.due_index import DueIndex
from app.worker.emitted_marks import EmittedMarks
from app.worker.emitter import Emitter
from app.worker.entry_slots import EntrySlots
from app.worker.metrics import WorkerMetrics
from app.worker.processor import BatchProcessor, InputRecord
from app.worker.send_buffer import SendBuffer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def event(event_id: str, user: str, name: str, at: datetime, **extra: object) -> dict:
    return {"event_id": event_id, "user_id": user, "name": name, "at": at.isoformat(), **extra}


def records(*events: dict, offset: int = 0) -> list[InputRecord]:
    return [
        InputRecord("user-events", 0, offset + i, e["user_id"].encode(), orjson.dumps(e))
        for i, e in enumerate(events)
    ]


@pytest.fixture
async def make_processor(settings, store_db, redis_client, unique):
    """A processor running `engine` on this test's database and Redis keys."""

    async def make(engine: JourneyEngine) -> BatchProcessor:
        metrics = WorkerMetrics()
        store = UserStore(store_db, settings.mongo_bulk_ops)
        await ensure_indexes(store_db)
        buffer = SendBuffer(redis_client, prefix=unique)
        emitter = Emitter(BranchLock(redis_client, unique, 3600), buffer, store_db, metrics)
        due_index = DueIndex(redis_client, unique)
        marks = EmittedMarks(redis_client, unique)
        slots = EntrySlots(redis_client, unique, store_db, 3600)
        processor = BatchProcessor(
            lambda: engine, store, emitter, due_index, marks, 8, metrics, 64 * 1024, slots
        )
        processor.buffer = buffer  # type: ignore[attr-defined]
        processor.store = store  # type: ignore[attr-defined]
        return processor

    return make


@pytest.fixture
async def processor(make_processor):
    return await make_processor(
        JourneyEngine([load_journey(EXAMPLES / "classdojo-activation.yaml")])
    )
