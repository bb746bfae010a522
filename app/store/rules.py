"""Deployed rules for every journey (quiet hours, frequency caps), versioned like journeys in
the `rules` collection. The workers run the newest published version, the same rules the
simulator takes with `--rules`; unlike a journey version, rules have no users inside, so a newly
published version applies to every send from then on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING

from app.engine import Rules, VersionedRules, load_rules_text
from app.store.mongo import Database
from app.store.versions import PUBLISHED, Versions, refuse_republish


@dataclass(frozen=True)
class DeployedRules:
    rules: VersionedRules
    status: str
    digest: str
    deployed_at: datetime
    source: str
    # Its status before the call that returned it; None when that call created it.
    previous_status: str | None = None

    @property
    def created(self) -> bool:
        return self.previous_status is None


class RulesRegistry:
    def __init__(self, database: Database) -> None:
        self._versions = Versions(database, "rules")
        self.collection = self._versions.collection

    async def deploy(self, text: str, source_name: str, status: str = PUBLISHED) -> DeployedRules:
        """Validates and stores a rules version, published unless `status` is a draft. The same
        text again is the stored version, idempotent as a journey's (an archived one is refused,
        not published again: `POST /rules/versions/N/publish` does that); a version number
        already taken by other text is a `DeployError`."""
        rules = load_rules_text(text, source_name)
        key, what = f"rules:{rules.version}", f"version {rules.version} of the rules"
        stored = await self._versions.store(
            key, {"version": rules.version}, text, source_name, what=what
        )
        current = stored.document["status"]
        if status == PUBLISHED and current != PUBLISHED:
            refuse_republish(
                current,
                source_name,
                what,
                f"`POST /rules/versions/{rules.version}/publish` publishes it again",
            )
            await self._versions.set_status(key, PUBLISHED)
        document = await self.collection.find_one({"_id": key})
        return self._deployed(document, None if stored.created else current)

    async def set_status(self, version: int, status: str) -> bool:
        return await self._versions.set_status(f"rules:{version}", status)

    async def list(self) -> list[DeployedRules]:
        documents = await self._versions.documents([("version", ASCENDING)])
        return [self._deployed(document) for document in documents]

    async def fingerprint(self) -> str:
        return await self._versions.fingerprint()

    async def current(self) -> Rules | None:
        """The newest published version's rules; None when no version is published."""
        documents = (
            await self.collection.find({"status": PUBLISHED})
            .sort([("version", DESCENDING)])
            .limit(1)
            .to_list(None)
        )
        return self._deployed(documents[0]).rules.rules if documents else None

    @staticmethod
    def _deployed(document: dict[str, Any], previous_status: str | None = None) -> DeployedRules:
        return DeployedRules(
            rules=load_rules_text(document["source"], document["source_name"]),
            status=document["status"],
            digest=document["digest"],
            deployed_at=document["deployed_at"],
            source=document["source"],
            previous_status=previous_status,
        )
