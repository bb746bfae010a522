"""Versioned definitions (journeys, rules), one document per version. A version, once deployed,
never changes; its status says whether the workers run it. Workers poll a fingerprint of the
collection (FerretDB has no change streams) and reload when it changes.

Storing the text of a deployed version again is idempotent: it answers with the stored version,
its status unchanged. `publish` makes a draft published, and refuses to bring back an archived
or paused version unless asked to (a roll back, a resume): `journeys deploy` never does it
silently."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app.engine.lifecycle import ARCHIVED, DRAFT, PAUSED, PUBLISHED
from app.store.mongo import Database

__all__ = [
    "ARCHIVED",
    "DRAFT",
    "PAUSED",
    "PUBLISHED",
    "DeployError",
    "Stored",
    "Versions",
    "refuse_republish",
    "stored_now",
]


class DeployError(ValueError):
    pass


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def stored_now() -> datetime:
    """Now, cut to the milliseconds MongoDB keeps."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass(frozen=True)
class Stored:
    """A version's document, and whether this call created it."""

    document: dict[str, Any]
    created: bool


class Versions:
    def __init__(self, database: Database, name: str) -> None:
        self.collection = database[name]

    async def store(
        self, key: str, fields: dict[str, Any], text: str, source_name: str, *, what: str
    ) -> Stored:
        """Stores a new draft version under `key`. The same text again is the stored version,
        status unchanged; other text under a key already taken is refused (`what` names the
        version in the error)."""
        existing = await self.collection.find_one({"_id": key})
        if existing is not None:
            if existing["digest"] != digest(text):
                raise DeployError(
                    f"{source_name}: {what} is already deployed with different content "
                    "(expected a new version number)"
                )
            return Stored(existing, created=False)
        document = {
            "_id": key,
            **fields,
            "status": DRAFT,
            "source": text,
            "source_name": source_name,
            "digest": digest(text),
            "deployed_at": stored_now(),
        }
        await self.collection.insert_one(document)
        return Stored(document, created=True)

    async def set_status(self, key: str, status: str, fields: dict[str, Any] | None = None) -> bool:
        """Sets the status (and `fields`); a version published for the first time records when,
        in `published_at`."""
        changes: dict[str, Any] = {"$set": {"status": status, **(fields or {})}}
        result = await self.collection.update_one({"_id": key}, changes)
        if status == PUBLISHED:
            await self.collection.update_one(
                {"_id": key, "published_at": None}, {"$set": {"published_at": stored_now()}}
            )
        return result.matched_count == 1

    async def status_of(self, key: str) -> str | None:
        document = await self.collection.find_one({"_id": key}, {"status": 1})
        return document["status"] if document else None

    async def documents(
        self, sort: list[tuple[str, int]], query: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        return await self.collection.find(query or {}).sort(sort).to_list(None)

    async def fingerprint(self) -> str:
        """Changes whenever a version is deployed or changes status (or is told to exit its
        users): cheap to poll."""
        documents = await self.collection.find(
            {}, {"digest": 1, "status": 1, "exit_entered_before": 1}
        ).to_list(None)
        parts = sorted(
            f"{d['_id']}:{d['digest']}:{d['status']}:{d.get('exit_entered_before')}"
            for d in documents
        )
        return digest("\n".join(parts))


def refuse_republish(status: str, source_name: str, what: str, how: str) -> None:
    """`deploy` publishes a draft and leaves a published version as it is; an archived or
    paused version comes back only when the operator says so (`how`)."""
    if status in (ARCHIVED, PAUSED):
        raise DeployError(
            f"{source_name}: {what} is {status}; deploying its text again does not bring it "
            f"back ({how})"
        )
