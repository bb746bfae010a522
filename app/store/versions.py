"""Versioned definitions (journeys, rules), one document per version. A version, once deployed,
never changes; its status says whether the workers run it. Workers poll a fingerprint of the
collection (FerretDB has no change streams) and reload when it changes."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from app.store.mongo import Database

PUBLISHED = "published"
DRAFT = "draft"
ARCHIVED = "archived"


class DeployError(ValueError):
    pass


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Versions:
    def __init__(self, database: Database, name: str) -> None:
        self.collection = database[name]

    async def store(
        self,
        key: str,
        fields: dict[str, Any],
        text: str,
        source_name: str,
        status: str,
        *,
        what: str,
        keep_status: bool = False,
    ) -> dict[str, Any]:
        """Stores a new version under `key` and returns its document. The same text again
        returns the stored one, with `status` applied unless `keep_status`; other text under a
        key already taken is refused (`what` names the version in the error)."""
        existing = await self.collection.find_one({"_id": key})
        if existing is not None:
            if existing["digest"] != digest(text):
                raise DeployError(
                    f"{source_name}: {what} is already deployed with different content "
                    "(expected a new version number)"
                )
            if not keep_status and existing["status"] != status:
                await self.set_status(key, status)
                existing["status"] = status
            return existing
        now = datetime.now(UTC)
        document = {
            "_id": key,
            **fields,
            "status": status,
            "source": text,
            "source_name": source_name,
            "digest": digest(text),
            "deployed_at": now.replace(microsecond=now.microsecond // 1000 * 1000),  # as stored
        }
        await self.collection.insert_one(document)
        return document

    async def set_status(self, key: str, status: str) -> bool:
        result = await self.collection.update_one({"_id": key}, {"$set": {"status": status}})
        return result.matched_count == 1

    async def documents(self, sort: list[tuple[str, int]]) -> list[dict[str, Any]]:
        return await self.collection.find({}).sort(sort).to_list(None)

    async def fingerprint(self) -> str:
        """Changes whenever a version is deployed or changes status: cheap to poll."""
        documents = await self.collection.find({}, {"digest": 1, "status": 1}).to_list(None)
        parts = sorted(f"{d['_id']}:{d['digest']}:{d['status']}" for d in documents)
        return digest("\n".join(parts))
