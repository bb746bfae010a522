"""Deployed rules on the real MongoDB-wire server, through both drivers: versions that never
change, idempotent re-deploys, the newest published version as the one the workers run."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import main
from app.engine import JourneyError
from app.engine.definitions import FrequencyCap
from app.store.deploy import deploy_text
from app.store.journeys import DeployedJourney, JourneyRegistry
from app.store.rules import DeployedRules, RulesRegistry
from app.store.schema import ensure_indexes
from app.store.versions import ARCHIVED, DRAFT, PUBLISHED, DeployError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def rules_text(version: int, limit: int) -> str:
    return (
        f"kind: rules\nversion: {version}\n"
        f"frequency_caps:\n  - {{channel: email, limit: {limit}, window: 1d}}\n"
    )


async def test_deploy_list_and_an_idempotent_redeploy(store_db) -> None:
    registry = RulesRegistry(store_db)
    await ensure_indexes(store_db)
    deployed = await registry.deploy(rules_text(1, 2), "rules.yaml")
    assert (deployed.rules.version, deployed.status) == (1, PUBLISHED)
    assert deployed.rules.rules.frequency_caps == (FrequencyCap("email", 2, timedelta(days=1)),)
    before = await registry.fingerprint()

    again = await registry.deploy(rules_text(1, 2), "elsewhere.yaml", DRAFT)
    assert (again.rules, again.status, again.deployed_at, again.created) == (
        deployed.rules,
        PUBLISHED,
        deployed.deployed_at,
        False,
    )
    assert await registry.fingerprint() == before
    assert [(d.rules.version, d.status) for d in await registry.list()] == [(1, PUBLISHED)]
    assert await registry.collection.count_documents({}) == 1


async def test_deploying_the_text_of_an_archived_version_does_not_publish_it(store_db) -> None:
    registry = RulesRegistry(store_db)
    await registry.deploy(rules_text(1, 2), "rules.yaml", DRAFT)
    assert (await registry.deploy(rules_text(1, 2), "rules.yaml")).status == PUBLISHED
    assert await registry.set_status(1, ARCHIVED)
    with pytest.raises(DeployError, match="version 1 of the rules is archived"):
        await registry.deploy(rules_text(1, 2), "rules.yaml")
    assert [(d.rules.version, d.status) for d in await registry.list()] == [(1, ARCHIVED)]


async def test_the_same_version_with_other_text_is_refused(store_db) -> None:
    registry = RulesRegistry(store_db)
    await registry.deploy(rules_text(1, 2), "rules.yaml")
    with pytest.raises(DeployError, match="version 1 of the rules is already deployed"):
        await registry.deploy(rules_text(1, 3), "changed.yaml")
    with pytest.raises(JourneyError, match="expected 'kind' to be set"):
        await registry.deploy("frequency_caps: []\n", "older.yaml")
    assert [d.source for d in await registry.list()] == [rules_text(1, 2)]


async def test_current_is_the_newest_published_version(store_db) -> None:
    registry = RulesRegistry(store_db)
    assert await registry.current() is None
    await registry.deploy(rules_text(1, 1), "v1.yaml", DRAFT)
    assert await registry.current() is None  # a draft is not run
    await registry.deploy(rules_text(2, 2), "v2.yaml")
    await registry.deploy(rules_text(10, 10), "v10.yaml")  # 10 sorts after 2 as a number
    await registry.deploy(rules_text(11, 11), "v11.yaml", DRAFT)
    limit = lambda rules: rules.frequency_caps[0].limit  # noqa: E731
    assert limit(await registry.current()) == 10
    before = await registry.fingerprint()
    assert await registry.set_status(10, ARCHIVED)
    assert await registry.fingerprint() != before
    assert limit(await registry.current()) == 2
    assert await registry.set_status(1, PUBLISHED)
    assert limit(await registry.current()) == 2  # published, but older
    assert not await registry.set_status(99, PUBLISHED)
    assert [d.rules.version for d in await registry.list()] == [1, 2, 10, 11]


async def test_deploy_text_stores_each_kind_in_its_own_registry(store_db) -> None:
    journey_text = (EXAMPLES / "demo-onboarding.yaml").read_text()
    journey = await deploy_text(store_db, journey_text, "demo.yaml")
    rules = await deploy_text(store_db, rules_text(1, 1), "rules.yaml", DRAFT)
    assert isinstance(journey, DeployedJourney) and journey.journey.id == "demo-onboarding"
    assert isinstance(rules, DeployedRules) and (rules.rules.version, rules.status) == (1, DRAFT)
    assert [d.journey.id for d in await JourneyRegistry(store_db).list()] == ["demo-onboarding"]
    assert [d.rules.version for d in await RulesRegistry(store_db).list()] == [1]


async def test_the_journey_engine_carries_the_rules_it_is_given(store_db) -> None:
    journeys, rules = JourneyRegistry(store_db), RulesRegistry(store_db)
    await journeys.deploy((EXAMPLES / "demo-onboarding.yaml").read_text(), "demo.yaml")
    await rules.deploy(rules_text(1, 1), "rules.yaml")
    engine = await journeys.engine(await rules.current())
    assert engine.rules.frequency_caps == (FrequencyCap("email", 1, timedelta(days=1)),)
    assert list(engine.current) == ["demo-onboarding"]


def test_journeys_deploy_takes_rules_files_and_journeys_rules_lists_them(
    mongo_db, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_text(2, 1))
    journey = EXAMPLES / "demo-onboarding.yaml"
    env = {"MONGO_DB": mongo_db.name}
    deployed = CliRunner().invoke(main, ["deploy", "--draft", str(rules), str(journey)], env=env)
    assert deployed.exit_code == 0, deployed.output
    assert deployed.output.splitlines() == [
        f"{rules}: rules version 2 deployed (draft): no quiet hours; email at most 1 per 1d",
        f"{journey}: demo-onboarding version 1 deployed (draft)",
    ]
    published = CliRunner().invoke(main, ["deploy", str(rules)], env=env)
    assert "rules version 2 deployed (published)" in published.output
    listed = CliRunner().invoke(main, ["rules"], env=env)
    assert " ".join(listed.output.split()) == (
        "rules v2 published no quiet hours; email at most 1 per 1d"
    )
    rules.write_text(rules_text(2, 5))
    clash = CliRunner().invoke(main, ["deploy", str(rules)], env=env)
    assert clash.exit_code == 1 and "version 2 of the rules is already deployed" in clash.output
