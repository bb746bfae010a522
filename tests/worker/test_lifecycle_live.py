"""A journey's lifecycle against a real `journeys worker`, driven through the HTTP API: a paused
journey enters nobody and holds its users at their next message until it is resumed, and
archiving with `exit_users` exits the users inside before their next message."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from app.store.mongo import close_client, new_client
from tests.api.test_api import AUTH, api_client
from tests.pipeline import Pipeline

JOURNEY = (
    "id: life\nversion: 1\nentry: {event: signed_up}\nsteps:\n"
    "  wait: {type: delay, duration: 4s, next: hello}\n"
    "  hello: {type: message, channel: webhook, template: generic_offer}\n"
)


def signed_up(user: str) -> dict:
    at = datetime.now(UTC).isoformat()
    return {"event_id": f"{user}-1", "user_id": user, "name": "signed_up", "at": at}


async def users_sent(pipeline: Pipeline, timeout: float, until: int | None = None) -> list[str]:
    sent = await pipeline.dispatched(timeout=timeout, until=until)
    return sorted(r["user_id"] for r in sent)


async def analytics(pipeline: Pipeline, user: str) -> list[tuple[str, str | None]]:
    client = new_client(pipeline.settings)
    try:
        cursor = client[pipeline.settings.mongo_db]["timeline"].find(
            {"kind": "analytics", "user_id": user}
        )
        return [(d["event"], d.get("reason")) async for d in cursor]
    finally:
        await close_client(client)


async def test_pause_holds_users_resume_sends_and_archive_exits(pipeline, tmp_path: Path) -> None:
    path = tmp_path / "life.yaml"
    path.write_text(JOURNEY)
    await pipeline.deploy(path)
    pipeline.start_worker()
    api = await api_client(pipeline.settings)
    try:
        await pipeline.publish([signed_up("zed")])  # the worker is up once zed's message left
        assert await users_sent(pipeline, timeout=90, until=1) == ["zed"]

        await pipeline.publish([signed_up("ada")])
        await asyncio.sleep(1)
        assert (await api.post("/journeys/life/pause", headers=AUTH)).status == 200
        await asyncio.sleep(1.5)  # the worker polls for status changes
        await pipeline.publish([signed_up("bo")])  # paused: bo enters nothing
        await asyncio.sleep(6)  # ada's delay ended meanwhile: she waits at her message
        assert await users_sent(pipeline, timeout=1) == ["zed"]
        assert ("waited", "journey paused") in await analytics(pipeline, "ada")

        assert (await api.post("/journeys/life/resume", headers=AUTH)).status == 200
        assert await users_sent(pipeline, timeout=60, until=2) == ["ada", "zed"]

        await pipeline.publish([signed_up("cy")])
        await asyncio.sleep(1)
        stop = "/journeys/life/versions/1/archive?exit_users=true"
        assert (await api.post(stop, headers=AUTH)).status == 200
        await asyncio.sleep(8)  # cy's delay ended meanwhile
        assert await users_sent(pipeline, timeout=1) == ["ada", "zed"]
        assert ("exited", "version 1 archived: users asked to exit") in await analytics(
            pipeline, "cy"
        )
        assert await analytics(pipeline, "bo") == []
    finally:
        await api.close()
