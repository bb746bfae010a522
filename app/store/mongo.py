"""The MongoDB client: Motor by default, as the design asks, or PyMongo's native async client
(MONGO_DRIVER=pymongo), which replaces Motor upstream. Both expose the same calls we use."""

from __future__ import annotations

from typing import Any

from pymongo.errors import BulkWriteError

from app.config import Settings

Database = Any  # AsyncIOMotorDatabase | pymongo.asynchronous.database.AsyncDatabase
DUPLICATE_KEY = 11000


def new_client(settings: Settings) -> Any:
    if settings.mongo_driver == "motor":
        from motor.motor_asyncio import AsyncIOMotorClient

        return AsyncIOMotorClient(settings.mongo_url, tz_aware=True)
    if settings.mongo_driver == "pymongo":
        from pymongo import AsyncMongoClient

        return AsyncMongoClient(settings.mongo_url, tz_aware=True)
    raise ValueError(
        f"MONGO_DRIVER={settings.mongo_driver!r} is not a known driver (expected motor or pymongo)"
    )


async def close_client(client: Any) -> None:
    """Motor's close() is synchronous, PyMongo's async client's is a coroutine."""
    result = client.close()
    if result is not None:
        await result


def duplicate_writes(error: BulkWriteError) -> list[int]:
    """The indexes of the writes a bulk write refused as duplicate keys (a replay, or another
    writer first); re-raises the error if any write failed for another reason."""
    write_errors = error.details.get("writeErrors", [])
    if any(write_error.get("code") != DUPLICATE_KEY for write_error in write_errors):
        raise error
    return [write_error["index"] for write_error in write_errors]
