"""The MongoDB client: Motor by default, as the design asks, or PyMongo's native async client
(MONGO_DRIVER=pymongo), which replaces Motor upstream. Both expose the same calls we use."""

from __future__ import annotations

from typing import Any

from app.config import Settings

Database = Any  # AsyncIOMotorDatabase | pymongo.asynchronous.database.AsyncDatabase


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
