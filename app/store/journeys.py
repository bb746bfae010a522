"""Deployed journeys, versioned, in the `journeys` collection. A version, once deployed, never
changes: users inside keep the version they entered with, so editing one in place would change
their path. Workers poll this collection (FerretDB has no change streams) and pick up new
versions without a restart."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING

from app.engine import Journey, JourneyEngine, load_journey_text
from app.store.mongo import Database

PUBLISHED = "published"
DRAFT = "draft"
ARCHIVED = "archived"


class DeployError(ValueError):
    pass


@dataclass(frozen=True)
class DeployedJourney:
    journey: Journey
    status: str
    digest: str
    deployed_at: datetime


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class JourneyRegistry:
    def __init__(self, database: Database) -> None:
        self.collection = database["journeys"]

    async def ensure_indexes(self) -> None:
        await self.collection.create_index([("journey_id", ASCENDING), ("version", ASCENDING)])

    async def deploy(self, text: str, source_name: str, status: str = PUBLISHED) -> Journey:
        """Validates and stores a journey version; deploying the same text again is a no-op."""
        journey = load_journey_text(text, source_name)
        key = f"{journey.id}:{journey.version}"
        existing = await self.collection.find_one({"_id": key})
        if existing is not None:
            if existing["digest"] != _digest(text):
                raise DeployError(
                    f"{source_name}: version {journey.version} of journey '{journey.id}' is "
                    "already deployed with different content (expected a new version number)"
                )
            if existing["status"] != status:
                await self.set_status(journey.id, journey.version, status)
            return journey
        await self.collection.insert_one(
            {
                "_id": key,
                "journey_id": journey.id,
                "version": journey.version,
                "status": status,
                "source": text,
                "source_name": source_name,
                "digest": _digest(text),
                "deployed_at": datetime.now(UTC),
            }
        )
        return journey

    async def set_status(self, journey_id: str, version: int, status: str) -> bool:
        result = await self.collection.update_one(
            {"_id": f"{journey_id}:{version}"}, {"$set": {"status": status}}
        )
        return result.matched_count == 1

    async def list(self) -> list[DeployedJourney]:
        documents = await self.collection.find({}).sort([("_id", ASCENDING)]).to_list(None)
        return [self._deployed(document) for document in documents]

    async def versions(self, journey_id: str) -> list[dict[str, Any]]:
        """Every deployed version of one journey, oldest first: version, status and source."""
        return (
            await self.collection.find(
                {"journey_id": journey_id}, {"version": 1, "status": 1, "source": 1}
            )
            .sort("version", ASCENDING)
            .to_list(None)
        )

    async def fingerprint(self) -> str:
        """Changes whenever a version is deployed or changes status: cheap to poll."""
        documents = await self.collection.find({}, {"digest": 1, "status": 1}).to_list(None)
        parts = sorted(f"{d['_id']}:{d['digest']}:{d['status']}" for d in documents)
        return _digest("\n".join(parts))

    async def engine(self) -> JourneyEngine:
        """An engine over every version users may be in: archived versions stay loaded so their
        users can finish; the engine enters new users into the newest published version."""
        deployed = await self.list()
        return JourneyEngine([d.journey for d in deployed if d.status != DRAFT])

    @staticmethod
    def _deployed(document: dict[str, Any]) -> DeployedJourney:
        return DeployedJourney(
            journey=load_journey_text(document["source"], document["source_name"]),
            status=document["status"],
            digest=document["digest"],
            deployed_at=document["deployed_at"],
        )
