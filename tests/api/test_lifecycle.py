"""A journey's lifecycle through the HTTP API and the CLI, on the real stores: archiving stops
entries, a roll back publishes an older version, pause and resume, `exit_users`, and re-posting
or re-deploying a version's text changes nothing. What enters is read from the engine the
registry builds, the one every worker runs."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner

from app.cli import main
from app.engine import UserEvent, UserState
from app.store.journeys import JourneyRegistry
from app.store.mongo import close_client, new_client
from tests.api.test_api import AUTH, api_client


@pytest.fixture
async def stack(servers):
    """This test's own database and names (no event is posted here: no topic is needed)."""
    run = uuid.uuid4().hex[:10]
    settings = dataclasses.replace(
        servers, topic_prefix=f"test-{run}-", mongo_db=f"test_{run}", redis_prefix=f"test-{run}"
    )
    yield settings
    client = new_client(settings)
    await client.drop_database(settings.mongo_db)
    await close_client(client)


def text(version: int) -> str:
    return (
        f"id: life\nversion: {version}\nentry: {{event: signed_up}}\nsteps:\n"
        f"  hello: {{type: message, channel: webhook, template: generic_offer, next: wait}}\n"
        "  wait: {type: delay, duration: 1d}\n"
    )


async def entered(settings: Any, at: datetime | None = None) -> list[int]:
    """The versions a new user enters on an event at `at` (now by default), by the engine the
    workers would load now."""
    client = new_client(settings)
    try:
        engine = await JourneyRegistry(client[settings.mongo_db]).engine()
    finally:
        await close_client(client)
    event = UserEvent("e1", "ada", "signed_up", at or datetime.now(UTC))
    state = engine.apply(UserState.new("ada"), event, datetime.now(UTC)).state
    return [entry.version for entry in state.active_entries()]


async def test_archive_stops_entries_and_publishing_an_older_version_rolls_back(stack) -> None:
    client = await api_client(stack)
    try:
        for version in (1, 2):
            created = await client.post("/journeys", data=text(version), headers=AUTH)
            assert created.status == 201 and (await created.json())["status"] == "draft"
        path = "/journeys/life/versions"
        published = await client.post(f"{path}/2/publish", headers=AUTH)
        assert (await published.json())["archived"] == []
        assert await entered(stack) == [2]
        archived = await client.post(f"{path}/2/archive", headers=AUTH)
        assert (await archived.json())["status"] == "archived"
        assert await entered(stack) == []  # archived: no new entries
        rolled_back = await client.post(f"{path}/1/publish", headers=AUTH)
        assert (await rolled_back.json())["status"] == "published"
        assert await entered(stack) == [1]
        again = await client.post(f"{path}/2/publish", headers=AUTH)
        assert (await again.json())["archived"] == [1]  # one published version at a time
        listed = await (await client.get("/journeys", headers=AUTH)).json()
        assert [(j["version"], j["status"]) for j in listed] == [(1, "archived"), (2, "published")]
        assert await entered(stack) == [2]
        assert (await client.post(f"{path}/9/archive", headers=AUTH)).status == 404
        assert (await client.post(f"{path}/x/archive", headers=AUTH)).status == 400
    finally:
        await client.close()


async def test_pause_and_resume_with_or_without_exiting_the_users_inside(stack) -> None:
    client = await api_client(stack)
    try:
        await client.post("/journeys", data=text(1), headers=AUTH)
        assert (await client.post("/journeys/life/resume", headers=AUTH)).status == 404
        await client.post("/journeys/life/versions/1/publish", headers=AUTH)
        paused = await client.post("/journeys/life/pause", headers=AUTH)
        assert (await paused.json()) == {
            "id": "life",
            "version": 1,
            "status": "paused",
            "archived": [],
            "exit_users": False,
        }
        assert await entered(stack) == []
        assert (await client.post("/journeys/life/pause", headers=AUTH)).status == 404
        bad = await client.post("/journeys/life/resume?exit_users=maybe", headers=AUTH)
        assert bad.status == 400
        resumed = await client.post("/journeys/life/resume?exit_users=true", headers=AUTH)
        assert (await resumed.json())["status"] == "published"
        assert (await resumed.json())["exit_users"] is True
        assert await entered(stack) == [1]
        db_client = new_client(stack)
        try:
            engine = await JourneyRegistry(db_client[stack.mongo_db]).engine()
        finally:
            await close_client(db_client)
        asked = engine.deployment("life", 1).exit_entered_before
        assert asked is not None and asked <= datetime.now(UTC)
    finally:
        await client.close()


async def test_events_from_before_the_first_publication_enter_no_one(stack) -> None:
    client = await api_client(stack)
    try:
        before = datetime.now(UTC) - timedelta(seconds=1)
        await client.post("/journeys", data=text(1), headers=AUTH)
        await client.post("/journeys", data=text(2) + "enter_past_events: true\n", headers=AUTH)
        await client.post("/journeys/life/versions/1/publish", headers=AUTH)
        published = datetime.now(UTC)
        assert await entered(stack, before) == [] and await entered(stack, published) == [1]
        await client.post("/journeys/life/versions/2/publish", headers=AUTH)
        assert await entered(stack, before) == [2]  # it says enter_past_events
    finally:
        await client.close()


async def test_reposting_the_text_of_a_published_version_changes_nothing(stack) -> None:
    client = await api_client(stack)
    try:
        await client.post("/journeys", data=text(1), headers=AUTH)
        await client.post("/journeys/life/versions/1/publish", headers=AUTH)
        again = await client.post("/journeys", data=text(1), headers=AUTH)
        assert again.status == 200
        assert await again.json() == {"id": "life", "version": 1, "status": "published"}
        shown = await (await client.get("/journeys/life", headers=AUTH)).json()
        assert [v["status"] for v in shown["versions"]] == ["published"]
        assert await entered(stack) == [1]
        rules = "kind: rules\nversion: 1\n"
        assert (await client.post("/rules", data=rules, headers=AUTH)).status == 201
        await client.post("/rules/versions/1/publish", headers=AUTH)
        same = await client.post("/rules", data=rules, headers=AUTH)
        assert same.status == 200 and (await same.json())["status"] == "published"
    finally:
        await client.close()


def test_deploy_is_idempotent_and_never_brings_back_an_archived_version(mongo_db, tmp_path) -> None:
    env = {"MONGO_DB": mongo_db.name}
    v1, v2 = tmp_path / "v1.yaml", tmp_path / "v2.yaml"
    v1.write_text(text(1))
    v2.write_text(text(2))

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(main, list(args), env=env)
        return result.exit_code, result.output.strip()

    assert run("deploy", str(v1)) == (0, f"{v1}: life version 1 deployed (published)")
    assert run("deploy", str(v1)) == (0, f"{v1}: life version 1 already deployed (published)")
    assert run("deploy", str(v2)) == (0, f"{v2}: life version 2 deployed (published)")
    code, out = run("deploy", str(v1))  # archived by v2's publication
    assert code == 1 and "version 1 of journey 'life' is archived" in out
    assert "`journeys rollback life 1` publishes it again" in out
    assert run("rollback", "life", "1") == (0, "life version 1 published; version 2 archived")
    assert run("pause", "life") == (0, "life version 1 paused")
    code, out = run("deploy", str(v1))
    assert code == 1 and "`journeys resume life` resumes it" in out
    assert run("resume", "life", "--exit-users") == (
        0,
        "life version 1 published; users inside exit at their next input",
    )
    assert run("archive", "life", "1") == (0, "life version 1 archived")
    code, out = run("pause", "life")
    assert code == 1 and "journey 'life' has no published version" in out
    listed = " ".join(run("list")[1].split())
    assert listed == "life v1 archived life life v2 archived life"
