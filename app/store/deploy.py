"""Deploys a journey file or a rules file, whichever the text is (a rules file says
`kind: rules`): what `journeys deploy` and the tests take."""

from __future__ import annotations

from app.engine import VersionedRules, load_definition_text
from app.store.journeys import DeployedJourney, JourneyRegistry
from app.store.mongo import Database
from app.store.rules import DeployedRules, RulesRegistry
from app.store.versions import PUBLISHED


async def deploy_text(
    database: Database, text: str, source_name: str, status: str = PUBLISHED
) -> DeployedJourney | DeployedRules:
    if isinstance(load_definition_text(text, source_name), VersionedRules):
        return await RulesRegistry(database).deploy(text, source_name, status)
    return await JourneyRegistry(database).deploy(text, source_name, status)
