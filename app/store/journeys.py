"""Deployed journeys, versioned, in the `journeys` collection. A version, once deployed, never
changes: users inside keep the version they entered with, so editing one in place would change
their path. Workers poll this collection (FerretDB has no change streams) and pick up new
versions without a restart."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING

from app.engine import EventTimePolicy, Journey, JourneyEngine, Rules, load_journey_text
from app.store.mongo import Database
from app.store.versions import ARCHIVED, DRAFT, PUBLISHED, DeployError, Versions

__all__ = [
    "ARCHIVED",
    "DRAFT",
    "PUBLISHED",
    "DeployError",
    "DeployedJourney",
    "JourneyRegistry",
]


@dataclass(frozen=True)
class DeployedJourney:
    journey: Journey
    status: str
    digest: str
    deployed_at: datetime


class JourneyRegistry:
    def __init__(self, database: Database) -> None:
        self._versions = Versions(database, "journeys")
        self.collection = self._versions.collection

    async def ensure_indexes(self) -> None:
        await self.collection.create_index([("journey_id", ASCENDING), ("version", ASCENDING)])

    async def deploy(self, text: str, source_name: str, status: str = PUBLISHED) -> Journey:
        """Validates and stores a journey version; deploying the same text again is a no-op."""
        journey = load_journey_text(text, source_name)
        await self._versions.store(
            f"{journey.id}:{journey.version}",
            {"journey_id": journey.id, "version": journey.version},
            text,
            source_name,
            status,
            what=f"version {journey.version} of journey '{journey.id}'",
        )
        return journey

    async def set_status(self, journey_id: str, version: int, status: str) -> bool:
        return await self._versions.set_status(f"{journey_id}:{version}", status)

    async def list(self) -> list[DeployedJourney]:
        documents = await self._versions.documents([("_id", ASCENDING)])
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
        return await self._versions.fingerprint()

    async def engine(
        self, rules: Rules | None = None, event_time: EventTimePolicy | None = None
    ) -> JourneyEngine:
        """An engine over every version users may be in: archived versions stay loaded so their
        users can finish; the engine enters new users into the newest published version.
        `rules` (the deployed rules for every journey) apply to all of them."""
        deployed = await self.list()
        return JourneyEngine(
            [d.journey for d in deployed if d.status != DRAFT], rules, event_time=event_time
        )

    @staticmethod
    def _deployed(document: dict[str, Any]) -> DeployedJourney:
        return DeployedJourney(
            journey=load_journey_text(document["source"], document["source_name"]),
            status=document["status"],
            digest=document["digest"],
            deployed_at=document["deployed_at"],
        )
