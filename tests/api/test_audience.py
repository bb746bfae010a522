"""`journeys audience`: each decision-tree leaf's MongoDB query, and how many stored users it
selects now, against users the engine itself wrote."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from pathlib import Path

import orjson
from bson import json_util
from click.testing import CliRunner, Result

from app.authoring.files import read_events
from app.cli import main
from app.config import Settings
from app.engine import JourneyEngine, UserState, load_journey_text
from app.store.journeys import JourneyRegistry
from app.store.users import StoredUser, UserCommit, UserStore
from tests.api.test_api import AUTH, api_client

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


async def test_each_leaf_shows_its_query_and_how_many_users_it_selects(mongo_db) -> None:
    source = (EXAMPLES / "classdojo-activation.yaml").read_text()
    await JourneyRegistry(mongo_db).deploy(source, "activation.yaml")
    engine = JourneyEngine([load_journey_text(source)])
    states: dict[str, UserState] = {}
    for event in read_events(EXAMPLES / "classdojo-activation.events.jsonl"):
        state = states.get(event.user_id) or UserState.new(event.user_id)
        states[event.user_id] = engine.apply(state, event, event.at + timedelta(seconds=1)).state
    store = UserStore(mongo_db, bulk_ops=100)
    commits = [
        UserCommit(StoredUser(user_id=u, state=s), expected_version=0, partition=0)
        for u, s in states.items()
    ]
    assert await store.commit_many(commits) == set()

    result = await audience(mongo_db, "activation")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    # tess signed up and did nothing; theo and tara added a class with students; pam is a parent.
    assert "has_class -> add_class: 1 users" in lines
    assert "has_class -> no_action: 2 users" in lines
    assert [line for line in lines if "->" in line][:2] == [
        "has_class -> add_class: 1 users",
        "has_class -> no_action: 2 users",
    ]
    assert sum("->" in line for line in lines) == 8  # four decisions, two leaves each
    over_api = await api_audience(mongo_db)
    assert [(leaf["decision"], leaf["leaf"], leaf["users"]) for leaf in over_api[:2]] == [
        ("has_class", "add_class", 1),
        ("has_class", "no_action", 2),
    ]
    query = next(line for line in lines if line.startswith("  db.users.find("))
    selected = (
        await mongo_db["users"]
        .find(json_util.loads(query.removeprefix("  db.users.find(").removesuffix(")")))
        .to_list(None)
    )
    assert [user["_id"] for user in selected] == ["tess"]
    assert "attributes.role" in query and orjson.loads(query[query.index("(") + 1 : -1])


async def test_a_journey_without_a_decision_or_not_deployed_says_so(mongo_db) -> None:
    await JourneyRegistry(mongo_db).deploy((EXAMPLES / "abandoned-cart.yaml").read_text(), "a")

    plain = await audience(mongo_db, "abandoned-cart")
    missing = await audience(mongo_db, "nope")

    assert (
        plain.exit_code == 0
        and plain.output == "abandoned-cart has no yes/no decision (branch step)\n"
    )
    assert missing.exit_code == 1 and "journey 'nope' has no published version" in missing.output


async def api_audience(mongo_db) -> list[dict]:
    """GET /journeys/activation/audience with a read token."""
    settings = dataclasses.replace(Settings(), mongo_db=mongo_db.name)
    client = await api_client(settings)
    try:
        answer = await client.get("/journeys/activation/audience", headers=AUTH)
        assert answer.status == 200, await answer.text()
        assert (await client.get("/journeys/activation/audience")).status == 401
        return (await answer.json())["leaves"]
    finally:
        await client.close()


async def audience(mongo_db, journey_id: str) -> Result:
    """The CLI in a thread: it runs its own event loop."""
    env = {"MONGO_DB": mongo_db.name}
    return await asyncio.to_thread(CliRunner().invoke, main, ["audience", journey_id], env=env)
