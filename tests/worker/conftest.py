"""The batch processor wired to the real MongoDB-wire server and Redis, and helpers to feed it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from motor.motor_asyncio import AsyncIOMotorClient
from pymongo import monitoring

from app.authoring.files import load_journey
from app.config import Settings
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
from app.worker.user_cache import UserCache
from tests.projected import ProjectedAtOnce

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
    """A processor running `engine` on this test's database (or `database`) and Redis keys,
    without a user cache unless given one."""

    async def make(
        engine: JourneyEngine, user_cache: UserCache | None = None, database: Any = None
    ) -> BatchProcessor:
        database = store_db if database is None else database
        metrics = WorkerMetrics()
        store = UserStore(database, settings.mongo_bulk_ops)
        await ensure_indexes(database)
        buffer = SendBuffer(redis_client, prefix=unique)
        lock = BranchLock(redis_client, unique, 3600)
        emitter = Emitter(lock, buffer, database, metrics, ProjectedAtOnce(database))
        due_index = DueIndex(redis_client, unique)
        marks = EmittedMarks(redis_client, unique)
        slots = EntrySlots(redis_client, unique, database, 3600)
        processor = BatchProcessor(
            lambda: engine,
            store,
            emitter,
            due_index,
            marks,
            8,
            metrics,
            64 * 1024,
            slots,
            user_cache=user_cache,
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


class Commands(monitoring.CommandListener):
    """The read and write commands sent, as (collection, command name, filters or documents)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, list[dict[str, Any]]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        command, name = event.command, event.command_name
        if name in ("find", "count"):
            shapes = [command.get("query") or command.get("filter") or {}]
        elif name == "distinct":  # the values of one field: read from its index
            shapes = [{command["key"]: {"$exists": True}, **(command.get("query") or {})}]
        elif name == "aggregate":  # count_documents: a $match first
            shapes = [command["pipeline"][0].get("$match", {})]
        elif name in ("update", "delete"):
            shapes = [statement["q"] for statement in command[f"{name}s"]]
        elif name == "insert":
            shapes = list(command["documents"])
        else:
            return
        self.seen.append((command[name], name, shapes))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        return None

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        return None


@pytest.fixture
async def watched(servers: Settings) -> AsyncIterator[tuple[Any, Commands]]:
    commands = Commands()
    client: AsyncIOMotorClient = AsyncIOMotorClient(
        servers.mongo_url, tz_aware=True, event_listeners=[commands]
    )
    name = f"test_{uuid.uuid4().hex[:12]}"
    yield client[name], commands
    await client.drop_database(name)
    client.close()
