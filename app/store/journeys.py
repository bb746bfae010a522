"""Deployed journeys, versioned, in the `journeys` collection. A version, once deployed, never
changes: users inside keep the version they entered with, so editing one in place would change
their path. Workers poll this collection (FerretDB has no change streams) and pick up new
versions and status changes without a restart.

A journey has at most one published version, the one new users enter: publishing a version (a
new one, or an older one to roll back) archives the version published before it. An archived or
paused version takes no new entries; users inside an archived version finish it, users inside a
paused one wait at their next message until it is resumed. With `exit_users`, archive, pause and
resume make the users inside the version exit at their next input instead. The engine applies
all of it (`app.engine.lifecycle`); this registry only records it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING

from app.engine import EventTimePolicy, Journey, JourneyEngine, Rules, load_journey_text
from app.engine.lifecycle import Deployment
from app.store.mongo import Database
from app.store.versions import (
    ARCHIVED,
    DRAFT,
    PAUSED,
    PUBLISHED,
    DeployError,
    Versions,
    refuse_republish,
    stored_now,
)

__all__ = [
    "ARCHIVED",
    "DRAFT",
    "PAUSED",
    "PUBLISHED",
    "Change",
    "DeployError",
    "DeployedJourney",
    "JourneyRegistry",
    "UnknownVersion",
]


class UnknownVersion(LookupError):
    """No such journey, or no such version of it (or none in the status an operation needs)."""


@dataclass(frozen=True)
class DeployedJourney:
    journey: Journey
    status: str
    digest: str
    deployed_at: datetime
    published_at: datetime | None = None  # when this version was first published
    exit_entered_before: datetime | None = None
    # Its status before the call that returned it; None when that call created it.
    previous_status: str | None = None

    @property
    def created(self) -> bool:
        return self.previous_status is None


@dataclass(frozen=True)
class Change:
    """What a lifecycle operation did: the version's new status, and the versions it archived."""

    journey_id: str
    version: int
    status: str
    archived: tuple[int, ...] = ()
    exit_users: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.journey_id,
            "version": self.version,
            "status": self.status,
            "archived": list(self.archived),
            "exit_users": self.exit_users,
        }


class JourneyRegistry:
    def __init__(self, database: Database) -> None:
        self._versions = Versions(database, "journeys")
        self.collection = self._versions.collection

    async def deploy(self, text: str, source_name: str, status: str = PUBLISHED) -> DeployedJourney:
        """Validates and stores a journey version, published unless `status` is a draft. The
        same text again is idempotent: a draft stays a draft unless published here, a published
        version stays as it is, and an archived or paused one is refused (a `DeployError`)
        rather than brought back: that is `rollback` or `resume`."""
        journey = load_journey_text(text, source_name)
        what = f"version {journey.version} of journey '{journey.id}'"
        stored = await self._versions.store(
            self._key(journey.id, journey.version),
            {"journey_id": journey.id, "version": journey.version},
            text,
            source_name,
            what=what,
        )
        current = stored.document["status"]
        if status == PUBLISHED and current != PUBLISHED:
            refuse_republish(
                current,
                source_name,
                what,
                f"`journeys rollback {journey.id} {journey.version}` publishes it again"
                if current == ARCHIVED
                else f"`journeys resume {journey.id}` resumes it",
            )
            await self.publish(journey.id, journey.version)
        document = await self.collection.find_one({"_id": self._key(journey.id, journey.version)})
        return self._deployed(document, None if stored.created else current)

    async def publish(self, journey_id: str, version: int) -> Change:
        """Makes `version` the one new users enter (a draft, or an older version: a roll back);
        the version published or paused before it is archived, its users finishing it."""
        if await self._versions.status_of(self._key(journey_id, version)) is None:
            raise UnknownVersion(f"no version {version} of journey '{journey_id}'")
        others = [
            d["version"]
            for d in await self._documents(journey_id)
            if d["version"] != version and d["status"] in (PUBLISHED, PAUSED)
        ]
        await self._versions.set_status(self._key(journey_id, version), PUBLISHED)
        for other in others:
            await self._versions.set_status(self._key(journey_id, other), ARCHIVED)
        return Change(journey_id, version, PUBLISHED, tuple(others))

    async def archive(self, journey_id: str, version: int, exit_users: bool = False) -> Change:
        """No new entries; users inside finish the version, or exit at their next input."""
        if await self._versions.status_of(self._key(journey_id, version)) is None:
            raise UnknownVersion(f"no version {version} of journey '{journey_id}'")
        await self._set(journey_id, version, ARCHIVED, exit_users)
        return Change(journey_id, version, ARCHIVED, exit_users=exit_users)

    async def pause(self, journey_id: str, exit_users: bool = False) -> Change:
        """Pauses the published version: no new entries, and users inside wait at their next
        message (or exit at their next input)."""
        version = await self._version_in(journey_id, PUBLISHED)
        await self._set(journey_id, version, PAUSED, exit_users)
        return Change(journey_id, version, PAUSED, exit_users=exit_users)

    async def resume(self, journey_id: str, exit_users: bool = False) -> Change:
        """Publishes the paused version again: new users enter it, and the users waiting inside
        go on (or exit at their next input)."""
        version = await self._version_in(journey_id, PAUSED)
        await self._set(journey_id, version, PUBLISHED, exit_users)
        return Change(journey_id, version, PUBLISHED, exit_users=exit_users)

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
        """An engine over every version users may be in (all but drafts: archived and paused
        versions stay loaded so their users can finish), with each version's deployment: the
        engine enters new users into the published version only, and only for events from the
        journey's first publication on. `rules` (the deployed rules for every journey) apply
        to all of them."""
        deployed = [d for d in await self.list() if d.status != DRAFT]
        first: dict[str, datetime] = {}
        for d in deployed:
            # A version stored before publication times were kept counts from its deployment.
            published = d.published_at or d.deployed_at
            first[d.journey.id] = min(published, first.get(d.journey.id, published))
        return JourneyEngine(
            [d.journey for d in deployed],
            rules,
            event_time=event_time,
            deployments={
                (d.journey.id, d.journey.version): Deployment(
                    d.status, d.exit_entered_before, first[d.journey.id]
                )
                for d in deployed
            },
        )

    async def _set(self, journey_id: str, version: int, status: str, exit_users: bool) -> None:
        fields = {"exit_entered_before": stored_now()} if exit_users else None
        await self._versions.set_status(self._key(journey_id, version), status, fields)

    async def _version_in(self, journey_id: str, status: str) -> int:
        found = [d["version"] for d in await self._documents(journey_id) if d["status"] == status]
        if not found:
            raise UnknownVersion(f"journey '{journey_id}' has no {status} version")
        return max(found)

    async def _documents(self, journey_id: str) -> list[dict[str, Any]]:
        return await self._versions.documents([("version", ASCENDING)], {"journey_id": journey_id})

    @staticmethod
    def _key(journey_id: str, version: int) -> str:
        return f"{journey_id}:{version}"

    @staticmethod
    def _deployed(document: dict[str, Any], previous_status: str | None = None) -> DeployedJourney:
        return DeployedJourney(
            journey=load_journey_text(document["source"], document["source_name"]),
            status=document["status"],
            digest=document["digest"],
            deployed_at=document["deployed_at"],
            published_at=document.get("published_at"),
            exit_entered_before=document.get("exit_entered_before"),
            previous_status=previous_status,
        )
