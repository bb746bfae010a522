"""Transactional sends asked for over the API and delivered by the sender to the provider stub:
once per idempotency key however often it is asked for, at the channel's rate."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from app.api.server import Api
from app.config import ApiSettings
from app.dispatch.transactional import TRANSACTIONAL_JOURNEY
from app.engine.state import UserState
from app.sender.service import Sender
from app.store.mongo import close_client, new_client
from app.store.users import StoredUser, UserCommit, UserStore
from tests.sender.conftest import SenderRig, running

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def api(rig: SenderRig) -> AsyncIterator[TestClient]:
    client = TestClient(TestServer(Api(rig.settings, ApiSettings(token=TOKEN, port=0)).app()))
    await client.start_server()
    yield client
    await client.close()


async def store_user(rig: SenderRig, user_id: str, locale: str, **attributes: object) -> None:
    """The user as the worker stores one."""
    client = new_client(rig.settings)
    try:
        state = UserState(user_id, attributes=attributes, locale=locale)
        store = UserStore(client[rig.settings.mongo_db], rig.settings.mongo_bulk_ops)
        assert await store.commit_many([UserCommit(StoredUser(user_id, state), 0, 0)]) == set()
    finally:
        await close_client(client)


async def duplicates(sender: Sender, count: int) -> None:
    """Waits until the sender counted `count` duplicates (dispatch ids it had settled)."""
    async with asyncio.timeout(30):
        while sender.metrics.total("duplicate") < count:
            await asyncio.sleep(0.05)


async def test_the_same_key_sends_once_with_the_users_address_and_locale(
    rig: SenderRig, api: TestClient
) -> None:
    await store_user(rig, "u-1", "fr-FR", email="ada@x.test", first_name="Ada")
    request = {
        "user_id": "u-1",
        "template": "welcome",
        "channel": "email",
        "idempotency_key": "signup-u-1",
        "data": {"first_name": "Adèle"},
    }
    assert (await api.post("/sends", json=request)).status == 401
    first = await api.post("/sends", json=request, headers=AUTH)
    assert first.status == 202
    dispatch_id = (await first.json())["dispatch_id"]
    again = await api.post("/sends", json=request, headers=AUTH)
    assert again.status == 200
    assert await again.json() == {"dispatch_id": dispatch_id, "repeat": True}
    other = await api.post("/sends", json={**request, "data": {}}, headers=AUTH)
    assert other.status == 409 and (await other.json())["where"] == "idempotency_key"
    async with running(rig) as sender:
        outcomes = await rig.outcomes(1)
        await duplicates(sender, 1)  # the repeat's record
        late = await api.post("/sends", json=request, headers=AUTH)
        assert late.status == 200  # after the delivery: published again, sent no more
        await duplicates(sender, 2)
    assert rig.stub.requests == {dispatch_id: 1}
    delivered = rig.stub.delivered[dispatch_id]["body"]
    assert delivered["subject"] == "Bienvenue, Adèle !"
    assert delivered["personalizations"] == [{"to": [{"email": "ada@x.test"}]}]
    outcome = outcomes[dispatch_id]
    assert (outcome["outcome"], outcome["user_id"], outcome["locale"]) == ("sent", "u-1", "fr")
    assert (outcome["journey_id"], outcome["template_id"]) == (TRANSACTIONAL_JOURNEY, "welcome")


async def test_a_request_that_cannot_be_sent_is_refused_and_leaves_its_key_unused(
    rig: SenderRig, api: TestClient
) -> None:
    await store_user(rig, "u-2", "en", email="bea@x.test")
    request = {"user_id": "u-2", "template": "welcome", "channel": "email", "idempotency_key": "k"}
    missing = await api.post("/sends", json=request, headers=AUTH)  # no first_name anywhere
    assert missing.status == 422 and "first_name" in (await missing.json())["error"]
    unknown = await api.post("/sends", json={**request, "template": "nope"}, headers=AUTH)
    assert unknown.status == 422 and (await unknown.json())["where"] == "template"
    no_phone = await api.post("/sends", json={**request, "channel": "sms"}, headers=AUTH)
    assert no_phone.status == 422 and "'phone'" in (await no_phone.json())["error"]
    bad = await api.post("/sends", json={**request, "channel": "fax"}, headers=AUTH)
    assert bad.status == 400 and (await bad.json())["where"] == "channel"
    fixed = {**request, "data": {"first_name": "Bea"}}
    assert (await api.post("/sends", json=fixed, headers=AUTH)).status == 202


async def test_transactional_sends_keep_to_the_channels_rate(
    rig: SenderRig, api: TestClient
) -> None:
    rig.sender_settings = dataclasses.replace(rig.sender_settings, email_rate=1.0)
    for n in range(3):
        request = {
            "user_id": f"u-{n}",
            "template": "welcome",
            "channel": "email",
            "idempotency_key": f"key-{n}",
            "address": f"u{n}@x.test",
            "data": {"first_name": f"User {n}"},
        }
        assert (await api.post("/sends", json=request, headers=AUTH)).status == 202
    async with running(rig):
        outcomes = await rig.outcomes(3)
    times = sorted(outcome["at"] for outcome in outcomes.values())
    assert (times[-1] - times[0]).total_seconds() >= 1.5  # a burst of 1, then 1/s: 2 s
    assert len(rig.stub.delivered) == 3
