"""Faults during a live run, with the simulator as the oracle: kill -9 the worker, kill -9 the
sender, restart Redis (which keeps nothing), restart the MongoDB-wire server, restart Kafka. At the
end the provider stub must have received every expected message exactly once, and each to the
right recipient with the right template and locale: zero duplicates, zero missing, zero wrong."""

from __future__ import annotations

import asyncio
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from app.authoring.files import load_journey
from app.engine import JourneyEngine, Send, UserEvent
from app.engine.simulator import simulate
from app.sender.stub import ProviderStub, serve
from tests.pipeline import signups
from tests.sender.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo-onboarding.yaml"
RESOLVED = {
    "welcome": {"en-GB": "en", "fr-FR": "fr", "de": "de", "pt-BR": "en"},
    "class_added": {"en-GB": "en", "fr-FR": "en", "de": "de", "pt-BR": "en"},
    "add_class_reminder": {"en-GB": "en", "fr-FR": "fr", "de": "en", "pt-BR": "en"},
    "add_your_class": {"en-GB": "en", "fr-FR": "en", "de": "en", "pt-BR": "en"},
}
# Users signing up before each fault; the benchmark command runs a larger size.
WAVE_USERS = int(os.environ.get("FAULT_WAVE_USERS", "12"))
FAULTS = ("kill -9 worker", "kill -9 sender", "restart redis", "restart mongo", "restart kafka")


def services(*args: str) -> None:
    result = subprocess.run(
        [str(ROOT / "scripts" / "services"), *args], capture_output=True, text=True
    )
    assert result.returncode == 0, f"services {' '.join(args)}: {result.stderr}"


def delivered_as(body: dict, channel: str) -> tuple[str, str, str]:
    """(recipient, template, locale) as the provider received them."""
    if channel == "email":
        meta = body["custom_args"]
        return body["personalizations"][0]["to"][0]["email"], meta["template"], meta["locale"]
    if channel == "push":
        return body["to"], body["data"]["template"], body["data"]["locale"]
    return body["user_id"], body["template"], body["locale"]


async def test_no_duplicate_no_missing_no_wrong_message_through_crashes_and_restarts(
    pipeline, tmp_path
) -> None:
    stub = ProviderStub()
    port = free_port()
    runner = await serve(stub, "127.0.0.1", port)
    pipeline.env.update(
        EMAIL_API_URL=f"http://127.0.0.1:{port}/email",
        PUSH_API_URL=f"http://127.0.0.1:{port}/push",
        WEBHOOK_URL=f"http://127.0.0.1:{port}/webhook",
        SENDER_TIMEOUT="2",
    )
    engine = JourneyEngine([load_journey(DEMO)])
    expected: dict[str, Send] = {}
    fault_of: dict[str, str] = {}  # dispatch id -> the fault its wave ran into

    async def publish_wave(number: int) -> None:
        events = signups(f"w{number}", WAVE_USERS, datetime.now(UTC))
        effects = simulate(engine, [UserEvent.from_record(e) for e in events])
        sends = {e.effect.dispatch_id: e.effect for e in effects if isinstance(e.effect, Send)}
        expected.update(sends)
        fault_of.update(dict.fromkeys(sends, FAULTS[number - 1]))
        await pipeline.publish(events)

    try:
        await pipeline.deploy(DEMO)
        pipeline.start("worker")
        pipeline.start("sender")

        await publish_wave(1)
        await asyncio.sleep(4)
        pipeline.kill("worker")
        pipeline.start("worker")

        await publish_wave(2)
        await asyncio.sleep(4)
        pipeline.kill("sender")
        pipeline.start("sender")

        await publish_wave(3)
        await asyncio.sleep(2)
        services("down", "redis")
        services("up", "redis")

        await publish_wave(4)
        await asyncio.sleep(2)
        services("down", "mongo")
        await asyncio.sleep(1)
        services("up", "mongo")

        await publish_wave(5)
        await asyncio.sleep(2)
        services("down", "kafka")
        services("up", "kafka")

        async with asyncio.timeout(240 + WAVE_USERS):
            while len(stub.delivered) < len(expected):
                await asyncio.sleep(0.5)
        await asyncio.sleep(5)  # anything extra would arrive now
    finally:
        await runner.cleanup()

    missing = set(expected) - set(stub.delivered)
    unexpected = set(stub.delivered) - set(expected)
    wrong = []
    for dispatch_id, delivery in stub.delivered.items():
        send = expected.get(dispatch_id)
        if send is None:
            continue
        recipient = send.address if send.channel != "webhook" else send.user_id
        want = (recipient, send.template_id, RESOLVED[send.template_id][send.locale or "en-GB"])
        if delivered_as(delivery["body"], delivery["channel"]) != want:
            wrong.append((dispatch_id, want, delivered_as(delivery["body"], delivery["channel"])))
    for fault in FAULTS:
        ids = {d for d, f in fault_of.items() if f == fault}
        figures = {
            "expected": len(ids),
            "delivered": len(ids & set(stub.delivered)),
            "missing": len(ids & missing),
            "wrong": sum(1 for w in wrong if w[0] in ids),
            # Requests the provider stub answered from its idempotency-key memory.
            "repeated_requests": sum(stub.requests[d] - 1 for d in ids if stub.requests[d] > 1),
        }
        print(f"fault suite: {fault}: {figures}")
    print(f"fault suite: unexpected deliveries: {len(unexpected)}")
    assert (missing, unexpected, wrong) == (set(), set(), [])
