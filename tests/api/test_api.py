"""The HTTP API on a real server on loopback with the real stores: refused requests, size limits,
journeys with versions, events, a user's timeline, the flow page with figures (/metrics and
/ready: test_metrics.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import shutil
import subprocess
import uuid
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from app.api.server import Api
from app.authoring.files import load_journey
from app.config import ApiSettings
from app.engine import JourneyEngine
from app.redis_client import new_redis
from app.sender.ledger import DeliveryLedger
from app.store.analytics import step_figures
from app.store.deliveries import Outcome
from app.store.journeys import JourneyRegistry
from app.store.mongo import close_client, new_client
from app.store.timeline import Timeline
from app.store.users import UserStore
from app.topic_admin import apply_topics
from app.topics import TOPIC_NAMES
from app.worker.branch_lock import BranchLock
from app.worker.due_index import DueIndex
from app.worker.emitted_marks import EmittedMarks
from app.worker.emitter import Emitter
from app.worker.entry_slots import EntrySlots
from app.worker.metrics import WorkerMetrics
from app.worker.processor import BatchProcessor, InputRecord
from app.worker.send_buffer import SendBuffer
from tests.projected import ProjectedAtOnce

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def stack(servers):
    run = uuid.uuid4().hex[:10]
    settings = dataclasses.replace(
        servers, topic_prefix=f"test-{run}-", mongo_db=f"test_{run}", redis_prefix=f"test-{run}"
    )
    await apply_topics(settings)
    yield settings
    client = new_client(settings)
    await client.drop_database(settings.mongo_db)
    await close_client(client)
    # A broker kept for a day of runs holds every topic left behind, and a file per segment.
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([settings.topic(name) for name in TOPIC_NAMES])
    finally:
        await admin.close()


async def api_client(
    settings, token: str = TOKEN, max_body: int = 64 * 1024, tokens: str = ""
) -> TestClient:
    api_settings = ApiSettings(token=token, tokens=tokens, port=0, max_body_bytes=max_body)
    app = Api(settings, api_settings).app()
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_requests_need_a_configured_token(stack) -> None:
    open_api = await api_client(stack, token="")
    guarded = await api_client(stack)
    try:
        for method, path in (("POST", "/journeys"), ("GET", "/journeys"), ("GET", "/metrics")):
            refused = await open_api.request(method, path, data="id: x", headers=AUTH)
            assert refused.status == 403 and "no API token" in (await refused.json())["error"]
        assert (await open_api.get("/health")).status == 200
        assert (await guarded.post("/journeys", data="id: x")).status == 401
        wrong = {"Authorization": "Bearer nope"}
        assert (await guarded.post("/events", data="{}", headers=wrong)).status == 401
        assert (await guarded.get("/health")).status == 200
    finally:
        await open_api.close()
        await guarded.close()


async def test_oversized_bodies_are_refused(stack) -> None:
    client = await api_client(stack, max_body=1024)
    try:
        response = await client.post("/events", data=b"x" * 4096, headers=AUTH)
        assert response.status == 413
    finally:
        await client.close()


async def test_journeys_draft_validate_publish_archive_list_show(stack) -> None:
    client = await api_client(stack)
    text = (EXAMPLES / "branching.yaml").read_text()
    try:
        bad = await client.post(
            "/journeys", data=text.replace("delay: 1d", "delay: soon"), headers=AUTH
        )
        error = await bad.json()
        assert bad.status == 422 and error["where"] == "/steps/choose/paths/0/delay"
        assert error["line"] == 13 and "duration" in error["expected"]
        created = await client.post("/journeys", data=text, headers=AUTH)
        assert created.status == 201 and (await created.json())["status"] == "draft"
        changed = await client.post("/journeys", data=text + "\n# edited\n", headers=AUTH)
        assert changed.status == 409  # a deployed version never changes
        path = "/journeys/second-purchase/versions/1"
        assert (await client.post(f"{path}/publish", headers=AUTH)).status == 200
        listed = await (await client.get("/journeys", headers=AUTH)).json()
        assert [(j["id"], j["version"], j["status"]) for j in listed] == [
            ("second-purchase", 1, "published")
        ]
        assert (await client.post(f"{path}/archive", headers=AUTH)).status == 200
        shown = await (await client.get("/journeys/second-purchase", headers=AUTH)).json()
        assert (
            shown["versions"][0]["status"] == "archived"
            and "paths" in shown["versions"][0]["source"]
        )
        assert (await client.get("/journeys/nope", headers=AUTH)).status == 404
    finally:
        await client.close()


RULES = "kind: rules\nversion: 1\nfrequency_caps:\n  - {channel: email, limit: 1, window: 1d}\n"


async def test_rules_draft_validate_publish_archive_list(stack) -> None:
    client = await api_client(stack)
    try:
        assert (await client.post("/rules", data=RULES)).status == 401
        assert (await client.post("/rules/versions/1/publish")).status == 401
        bad = await client.post("/rules", data=RULES.replace("1d", "daily"), headers=AUTH)
        error = await bad.json()
        assert bad.status == 422 and error["where"] == "/frequency_caps/0/window"
        assert error["line"] == 4 and "duration" in error["expected"]
        checked = await client.post("/journeys/validate", data=RULES, headers=AUTH)
        assert await checked.json() == {"valid": True, "kind": "rules", "version": 1}
        journey = await client.post(
            "/journeys/validate", data=(EXAMPLES / "branching.yaml").read_text(), headers=AUTH
        )
        assert (await journey.json())["kind"] == "journey"
        wrong = await client.post(
            "/journeys/validate", data="kind: rule\nversion: 1\n", headers=AUTH
        )
        assert wrong.status == 422 and (await wrong.json())["where"] == "/kind"
        created = await client.post("/rules", data=RULES, headers=AUTH)
        assert created.status == 201 and await created.json() == {"version": 1, "status": "draft"}
        changed = await client.post(
            "/rules", data=RULES.replace("limit: 1", "limit: 2"), headers=AUTH
        )
        assert changed.status == 409 and "version 1 of the rules" in (await changed.json())["error"]
        assert (await client.post("/rules/versions/1/publish", headers=AUTH)).status == 200
        again = await client.post("/rules", data=RULES, headers=AUTH)  # keeps its status
        assert (await again.json())["status"] == "published"
        listed = await (await client.get("/rules", headers=AUTH)).json()
        assert [(r["version"], r["status"], r["summary"], r["source"]) for r in listed] == [
            (1, "published", "no quiet hours; email at most 1 per 1d", RULES)
        ]
        assert (await client.post("/rules/versions/1/archive", headers=AUTH)).status == 200
        listed = await (await client.get("/rules", headers=AUTH)).json()
        assert [r["status"] for r in listed] == ["archived"]
        assert (await client.post("/rules/versions/7/publish", headers=AUTH)).status == 404
        assert (await client.post("/rules/versions/x/publish", headers=AUTH)).status == 400
    finally:
        await client.close()


async def test_events_are_validated_then_published(stack) -> None:
    client = await api_client(stack)
    try:
        bad = await client.post("/events", data=orjson.dumps({"user_id": "u"}), headers=AUTH)
        assert (
            bad.status == 400 and "'event_id' is a required property" in (await bad.json())["error"]
        )
        event = {
            "event_id": "e-1",
            "user_id": "u-1",
            "name": "signed_up",
            "at": "2026-11-02T09:00:00Z",
        }
        accepted = await client.post("/events", data=orjson.dumps(event), headers=AUTH)
        assert accepted.status == 202
    finally:
        await client.close()
    consumer = AIOKafkaConsumer(
        stack.topic("user-events"),
        bootstrap_servers=stack.kafka_bootstrap,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        async with asyncio.timeout(20):
            message = await consumer.getone()
    finally:
        await consumer.stop()
    assert message.key == b"u-1" and orjson.loads(message.value) == event


async def fill_timeline(settings, outcome: str = "sent", reason: str | None = None) -> None:
    """Runs the demo journey's sign-up for one user through the real processor, and records its
    welcome email's delivery."""
    client = new_client(settings)
    redis = new_redis(settings)
    db = client[settings.mongo_db]
    await JourneyRegistry(db).deploy((EXAMPLES / "demo-onboarding.yaml").read_text(), "demo")
    metrics = WorkerMetrics()
    emitter = Emitter(
        BranchLock(redis, settings.redis_prefix, 60),
        SendBuffer(redis, settings.redis_prefix),
        db,
        metrics,
        ProjectedAtOnce(db),
    )
    engine = JourneyEngine([load_journey(EXAMPLES / "demo-onboarding.yaml")])
    due_index = DueIndex(redis, settings.redis_prefix)
    marks = EmittedMarks(redis, settings.redis_prefix)
    store = UserStore(db, settings.mongo_bulk_ops)
    slots = EntrySlots(redis, settings.redis_prefix, db, 3600)
    processor = BatchProcessor(
        lambda: engine, store, emitter, due_index, marks, 8, metrics, 65536, slots
    )
    event = {"event_id": "e1", "user_id": "ada", "name": "signed_up", "at": "2026-11-02T09:00:00Z",
             "attributes": {"email": "ada@x.test", "first_name": "Ada"}}  # fmt: skip
    await processor.process(
        [InputRecord("user-events", 0, 0, b"ada", orjson.dumps(event))], datetime.now(UTC)
    )
    sends = [e for e in await Timeline(db).of_user("ada") if e["kind"] == "send"]
    await DeliveryLedger(redis, db, settings.redis_prefix).record(
        Outcome(
            dispatch_id=sends[0]["dispatch_id"],
            outcome=outcome,
            user_id="ada",
            journey_id="demo-onboarding",
            journey_version=1,
            step_id="welcome",
            channel="email",
            template_id="welcome",
            locale="en",
            attempts=1,
            reason=reason,
        )
    )
    await redis.aclose()
    await close_client(client)


async def test_timeline_and_flow_page(stack) -> None:
    await fill_timeline(stack)
    client = await api_client(stack)
    try:
        answer = await client.get("/users/ada/timeline", headers=AUTH)
        timeline = (await answer.json())["timeline"]
        kinds = [(item["kind"], item.get("event"), item.get("step_id")) for item in timeline]
        assert kinds[0] == ("analytics", "entered", None)
        send = next(item for item in timeline if item["kind"] == "send")
        assert send["step_id"] == "welcome" and send["delivery"]["outcome"] == "sent"
        page = await (await client.get("/journeys/demo-onboarding/flow", headers=AUTH)).text()
        assert 'data-step="welcome"' in page and "entered 1" in page and "sent 1" in page
        assert "waiting 1" in page  # ada waits for added_class
    finally:
        await client.close()


async def authorizing_proxy(api: TestClient) -> TestServer:
    """What people's browsers reach the API through (the README's advice): a reverse proxy that
    adds the bearer token, as one behind a single sign-on would."""

    async def forward(request: web.Request) -> web.Response:
        async with api.session.get(api.make_url(request.path_qs), headers=AUTH) as answer:
            return web.Response(
                body=await answer.read(), status=answer.status, content_type=answer.content_type
            )

    app = web.Application()
    app.router.add_get("/{path:.*}", forward)
    server = TestServer(app)
    await server.start_server()
    return server


async def test_flow_page_renders_in_chromium_with_its_figures(stack, tmp_path) -> None:
    browser = shutil.which("chromium")
    assert browser, "Debian's chromium is installed by scripts/test"
    await fill_timeline(stack)
    client = await api_client(stack)
    proxy = await authorizing_proxy(client)
    try:
        assert (await client.get("/journeys/demo-onboarding/flow")).status == 401
        url = str(proxy.make_url("/journeys/demo-onboarding/flow"))
        async with client.session.get(url) as through:
            assert through.status == 200 and 'data-step="welcome"' in await through.text()
        shot = tmp_path / "flow.png"
        chromium = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1400,900",
        ]
        run = partial(subprocess.run, capture_output=True, timeout=120)
        result = await asyncio.to_thread(run, [*chromium, f"--screenshot={shot}", url])
        assert shot.exists(), result.stderr.decode()[-2000:]
        # The figures as the browser rendered them, against the store's.
        dom = (await asyncio.to_thread(run, [*chromium, "--dump-dom", url])).stdout.decode()
        shown = {
            (step, figure): int(count)
            for step, figure, count in re.findall(
                r'<tr data-step="([^"]+)" data-figure="([^"]+)">'
                r"<td>[^<]*</td><td>[^<]*</td><td>(\d+)</td></tr>",
                dom,
            )
        }
        db = new_client(stack)
        try:
            journey = load_journey(EXAMPLES / "demo-onboarding.yaml")
            stored = await step_figures(db[stack.mongo_db], journey.id, 1, journey.start)
        finally:
            await close_client(db)
        assert shown and shown == {
            (step, name): count for step, names in stored.items() for name, count in names.items()
        }
        png = shot.read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
        Path(__file__).resolve().parents[2].joinpath(".local").mkdir(exist_ok=True)
        shutil.copy(shot, Path(__file__).resolve().parents[2] / ".local" / "flow-page.png")
    finally:
        await proxy.close()
        await client.close()
