"""`POST /journeys/{id}/steps/{step}/test-send`: a deployed journey's message rendered for a
stored user (their digest as it stands) or a given one, delivered to the provider stub marked
as a test, leaving the user's state and the delivery ledger alone."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.authoring.files import load_journey
from app.engine import JourneyEngine, ScheduledEntry, UserEvent, UserState
from app.sender.stub import ProviderStub, serve
from app.store.deliveries import Deliveries
from app.store.journeys import PUBLISHED, JourneyRegistry
from app.store.mongo import close_client, new_client
from app.store.schema import ensure_indexes
from app.store.users import StoredUser, UserCommit, UserStore
from tests.api.test_api import AUTH, api_client
from tests.sender.conftest import free_port

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TICK = datetime(2026, 11, 9, 7, tzinfo=UTC)
PATH = "/journeys/weekly-summary/steps/summary/test-send"
CI_TOKEN = "ci-write-0123456789abcdef"


@pytest.fixture
async def stack(servers, monkeypatch):
    run = uuid.uuid4().hex[:10]
    settings = dataclasses.replace(servers, mongo_db=f"test_{run}", redis_prefix=f"test-{run}")
    stub, port = ProviderStub(), free_port()
    runner = await serve(stub, "127.0.0.1", port)
    monkeypatch.setenv("EMAIL_API_URL", f"http://127.0.0.1:{port}/email")
    client = new_client(settings)
    db = client[settings.mongo_db]
    registry = JourneyRegistry(db)
    await ensure_indexes(db)
    text = (EXAMPLES / "weekly-summary.yaml").read_text()
    await registry.deploy(text, "weekly-summary.yaml", PUBLISHED)
    yield settings, stub, db
    await runner.cleanup()
    await client.drop_database(settings.mongo_db)
    await close_client(client)


def paula() -> UserState:
    """Inside the weekly summary since the 11-09 tick, with a lesson and a badge since."""
    engine = JourneyEngine([load_journey(EXAMPLES / "weekly-summary.yaml")])
    state = UserState.new("paula")
    inputs = [
        UserEvent("p-1", "paula", "signed_up", TICK.replace(day=6), attributes={"role": "parent"}),
        ScheduledEntry("paula", "weekly-summary", TICK),
        UserEvent("p-2", "paula", "lesson_completed", TICK.replace(day=10), {"title": "Sums"}),
        UserEvent("p-3", "paula", "badge_earned", TICK.replace(day=11)),
    ]
    for item in inputs:
        state = engine.apply(state, item, item.at if hasattr(item, "at") else TICK).state
    return state


async def test_a_stored_users_message_reaches_the_provider_as_a_test(stack) -> None:
    settings, stub, db = stack
    users = UserStore(db, settings.mongo_bulk_ops)
    state = paula()
    assert await users.commit_many([UserCommit(StoredUser("paula", state), 0, 0)]) == set()
    api = await api_client(settings, tokens=f"ci:write:{CI_TOKEN}")
    try:
        response = await api.post(PATH, json={"to": "qa@example.com", "user_id": "paula"})
        assert response.status == 401  # under the API token as every mutating route
        response = await api.post(
            PATH, json={"to": "qa@example.com", "user_id": "paula"}, headers=AUTH
        )
        answer = await response.json()
        assert response.status == 200, answer
        # A token without pii sees the recipient masked.
        masked = await api.post(
            PATH,
            json={"to": "qa@example.com", "user_id": "paula"},
            headers={"Authorization": f"Bearer {CI_TOKEN}"},
        )
        assert masked.status == 200 and (await masked.json())["to"] == "q***@example.com"
    finally:
        await api.close()
    assert answer["to"] == "qa@example.com" and answer["dispatch_id"].startswith("test:")
    assert answer["subject"] == "[TEST] Your week: 2 activities since 2026-11-09"
    body = stub.delivered[answer["dispatch_id"]]["body"]
    assert body["personalizations"] == [{"to": [{"email": "qa@example.com"}]}]
    assert body["subject"] == answer["subject"]
    assert "- 2026-11-10 07:00 lesson completed title=Sums" in body["content"][0]["value"]
    # The real user's state and the ledger are as they were.
    stored = (await users.load_many(["paula"]))["paula"]
    assert stored.state.to_document() == state.to_document()
    assert await Deliveries(db).collection.count_documents({}) == 0


async def test_bad_test_sends_are_refused_with_where(stack) -> None:
    settings, stub, _ = stack
    api = await api_client(settings)
    data = {"attributes": {"email": "x@example.com"}}
    try:
        for path, body, status, where in (
            (PATH, {"to": "qa@example.com"}, 400, "user_id"),
            (PATH, {"to": 3, "data": data}, 400, "to"),
            (PATH, {"to": "qa@example.com", "user_id": "nobody"}, 404, "user"),
            (
                "/journeys/weekly-summary/steps/sumary/test-send",
                {"to": "q@example.com", "data": data},
                404,
                "step",
            ),
            (
                PATH.replace("weekly", "monthly"),
                {"to": "q@example.com", "data": data},
                404,
                "journey",
            ),
            (PATH, {"to": "q@example.com", "data": data, "version": 2}, 404, "version"),
        ):
            response = await api.post(path, json=body, headers=AUTH)
            assert (response.status, (await response.json()).get("where")) == (status, where)
    finally:
        await api.close()
    assert stub.delivered == {}
