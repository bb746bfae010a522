"""The sender against a real provider stub on loopback and the real servers."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path

import orjson

from app.engine.definitions import WebhookRequest
from app.keyspace import Keyspace
from app.redis_client import new_redis
from app.sender import signing
from app.store.figures import JourneyFigures
from app.store.mongo import close_client, new_client
from tests.kafka_reader import read_records
from tests.sender.conftest import SenderRig, recipient, record, running


async def dead_letters(rig: SenderRig, count: int) -> list[dict]:
    return await read_records(
        rig.settings.kafka_bootstrap, rig.settings.topic("dead-letter"), count
    )


async def journey_figures(rig: SenderRig, expected: dict) -> dict:
    """The test journey's counts once they are `expected` (each is written right after its
    ledger outcome), or as they are after 10 s."""
    client = new_client(rig.settings)
    try:
        figures = JourneyFigures(client[rig.settings.mongo_db])
        for _ in range(50):
            found = (await figures.read("journey", 1)).get(1, {})
            if found == expected:
                break
            await asyncio.sleep(0.2)
        return found
    finally:
        await close_client(client)


async def test_each_recipient_delivered_once_with_its_idempotency_key(rig: SenderRig) -> None:
    emails = record("welcome", "email", "welcome", recipient(1), recipient(2, locale="fr-FR"))
    no_token = record("nudge", "push", "add_class_reminder", recipient(3, address=None))
    hook = record("hook", "webhook", "add_your_class", recipient(4, address=None))
    await rig.publish(emails, no_token, hook)
    async with running(rig):
        outcomes = await rig.outcomes(4)
    assert {k: v["outcome"] for k, v in outcomes.items()} == {
        f"{1:032x}": "sent",
        f"{2:032x}": "sent",
        f"{3:032x}": "suppressed",
        f"{4:032x}": "sent",
    }
    assert outcomes[f"{2:032x}"]["locale"] == "fr"
    assert rig.stub.requests == {f"{1:032x}": 1, f"{2:032x}": 1, f"{4:032x}": 1}
    french = rig.stub.delivered[f"{2:032x}"]["body"]
    assert french["subject"] == "Bienvenue, User 2 !"
    assert french["personalizations"] == [{"to": [{"email": "u2@x.test"}]}]


async def test_a_slow_channel_does_not_hold_back_another(rig: SenderRig) -> None:
    rig.sender_settings = dataclasses.replace(rig.sender_settings, email_rate=2.0)
    emails = record("welcome", "email", "welcome", *(recipient(n) for n in range(1, 9)))
    pushes = record("nudge", "push", "add_class_reminder", *(recipient(n) for n in range(11, 15)))
    email_keys = {r.dispatch_id for r in emails.recipients}
    push_keys = {r.dispatch_id for r in pushes.recipients}
    # One key, so one partition with the email record first: the push record is behind it.
    await rig.publish(raw=[orjson.dumps(r.to_record()) for r in (emails, pushes)])
    async with running(rig):
        async with asyncio.timeout(30):
            while not push_keys <= set(rig.stub.delivered):
                await asyncio.sleep(0.01)
        emails_by_then = len(email_keys & set(rig.stub.delivered))
        outcomes = await rig.outcomes(12)
    assert emails_by_then <= 4  # the burst of 2, perhaps 2 more: the pushes did not wait
    assert {o["outcome"] for o in outcomes.values()} == {"sent"}
    email_times = sorted(outcomes[key]["at"] for key in email_keys)
    spread = (email_times[-1] - email_times[0]).total_seconds()
    assert spread >= 2.5  # 8 emails at 2/s after a burst of 2: 3 s
    assert rig.stub.requests == {key: 1 for key in email_keys | push_keys}


async def test_retries_429_500_hang_and_drop_then_delivers_once(rig: SenderRig) -> None:
    rig.stub.script.extend(["429", "500", "hang", "drop"])
    await rig.publish(record("welcome", "email", "welcome", recipient(1)))
    async with running(rig):
        outcomes = await rig.outcomes(1, timeout=60)
    (outcome,) = outcomes.values()
    assert outcome["outcome"] == "sent" and outcome["attempts"] == 5
    assert rig.stub.requests[f"{1:032x}"] == 5
    assert list(rig.stub.delivered) == [f"{1:032x}"]


async def test_permanent_400_and_missing_variable_are_dead_lettered(rig: SenderRig) -> None:
    rig.stub.script.append("400")
    await rig.publish(record("a", "email", "welcome", recipient(1)))
    async with running(rig):
        await rig.outcomes(1)
        await rig.publish(
            record("b", "email", "welcome", recipient(2, variables={}), recipient(3)),
            raw=[b'{"batch_id": "broken"}'],
        )
        outcomes = await rig.outcomes(3)
        letters = await dead_letters(rig, 3)
    assert {k: v["outcome"] for k, v in outcomes.items()} == {
        f"{1:032x}": "failed",
        f"{2:032x}": "failed",
        f"{3:032x}": "sent",
    }
    reasons = {letter["recipient"]: letter["reason"] for letter in letters}
    assert "answered 400" in reasons[f"{1:032x}"]
    assert "'first_name' is undefined" in reasons[f"{2:032x}"]
    assert "'journey_id' is a required property" in reasons[None]
    assert f"{2:032x}" not in rig.stub.requests  # never half-rendered, never sent
    # Its counters, for the API's /metrics: the last snapshot is published as it stops.
    redis = new_redis(rig.settings)
    try:
        published = await redis.hgetall(Keyspace(rig.settings.redis_prefix).sender_metrics())
    finally:
        await redis.aclose()
    (snapshot,) = map(orjson.loads, published.values())
    assert (snapshot["records"], snapshot["dead_letters"]) == (3, 3)
    assert snapshot["deliveries"] == [
        {"channel": "email", "outcome": "failed", "count": 2},
        {"channel": "email", "outcome": "sent", "count": 1},
    ]
    # "sent" is what was sent: the failures are counted as failed
    expected = {"a": {"failed": 1}, "b": {"failed": 1, "sent": 1}}
    assert await journey_figures(rig, expected) == expected


async def test_sms_goes_out_in_twilios_format_with_basic_auth_and_a_status_callback(
    rig: SenderRig,
) -> None:
    rig.sender_settings = dataclasses.replace(
        rig.sender_settings, sms_status_callback="https://hooks.test/sms?app=j"
    )
    texts = record(
        "text", "sms", "welcome", recipient(1, address="+15550001"), recipient(2, address=None)
    )
    await rig.publish(texts)
    async with running(rig):
        await rig.outcomes(2)
        rig.stub.sms_auth_token = "rotated"  # the provider no longer takes our credentials
        await rig.publish(record("again", "sms", "welcome", recipient(3, address="+15550003")))
        outcomes = await rig.outcomes(3)
        (letter,) = await dead_letters(rig, 1)
    assert {k: v["outcome"] for k, v in outcomes.items()} == {
        f"{1:032x}": "sent",
        f"{2:032x}": "suppressed",
        f"{3:032x}": "failed",
    }
    sent = rig.stub.delivered[f"{1:032x}"]
    assert sent["channel"] == "sms"
    assert sent["path"] == "/2010-04-01/Accounts/AC-test/Messages.json"
    assert sent["body"] == {
        "To": "+15550001",
        "From": "+15005550006",
        "Body": "Hi User 1, glad you're here. Set up your first class to get started.",
        "StatusCallback": f"https://hooks.test/sms?app=j&dispatch_id={1:032x}",
    }
    assert letter["recipient"] == f"{3:032x}" and "answered 401" in letter["reason"]
    assert outcomes[f"{3:032x}"]["attempts"] == 1  # refused for good: not retried


async def test_a_webhook_step_sends_its_own_signed_request_and_the_answer_decides_retry(
    rig: SenderRig,
) -> None:
    crm = WebhookRequest(
        url=f"http://127.0.0.1:{rig.port}/webhook/crm/contacts",
        method="PUT",
        headers=(("X-Team", "lifecycle"),),
        body='{"user": {{ user_id | tojson }}, "text": {{ message.subject | tojson }}, '
        '"name": {{ first_name | tojson }}}',
    )
    rig.stub.script.extend(["500", "429"])  # retried: the third attempt is delivered
    await rig.publish(record("crm", "webhook", "welcome", recipient(1), webhook=crm))
    async with running(rig):
        await rig.outcomes(1, timeout=60)
        rig.stub.webhook_secret = "rotated"  # signatures no longer verify: 401, final
        await rig.publish(record("plain", "webhook", "welcome", recipient(2, address=None)))
        outcomes = await rig.outcomes(2)
        (letter,) = await dead_letters(rig, 1)
    assert outcomes[f"{1:032x}"]["outcome"] == "sent"
    assert outcomes[f"{1:032x}"]["attempts"] == 3
    sent = rig.stub.delivered[f"{1:032x}"]
    assert (sent["method"], sent["path"]) == ("PUT", "/webhook/crm/contacts")
    assert sent["headers"]["X-Team"] == "lifecycle"
    assert sent["headers"]["Content-Type"] == "application/json"
    assert sent["headers"][signing.SIGNATURE_HEADER].startswith("t=")
    assert sent["body"] == {"user": "u-1", "text": "Welcome to Journeys, User 1!", "name": "User 1"}
    assert outcomes[f"{2:032x}"]["outcome"] == "failed"
    assert outcomes[f"{2:032x}"]["attempts"] == 1
    assert letter["recipient"] == f"{2:032x}" and "answered 401" in letter["reason"]
    assert f"{2:032x}" not in rig.stub.delivered


async def test_a_redelivered_record_sends_nothing_twice(rig: SenderRig) -> None:
    batch = record("welcome", "email", "welcome", recipient(1), recipient(2))
    await rig.publish(batch)
    async with running(rig):
        await rig.outcomes(2)
    await rig.publish(batch)  # the same record again, as after a crash before the commit
    async with running(rig) as sender:
        async with asyncio.timeout(30):
            while sender.metrics.total("duplicate") < 2:
                await asyncio.sleep(0.1)
    assert rig.stub.requests == {f"{1:032x}": 1, f"{2:032x}": 1}
    expected = {"welcome": {"sent": 2}}  # each counted once
    assert await journey_figures(rig, expected) == expected


async def test_the_same_record_twice_in_hand_makes_one_request_per_key(rig: SenderRig) -> None:
    batch = record("welcome", "email", "welcome", recipient(1), recipient(2))
    await rig.publish(batch, batch)  # both in flight at once, as records are handled together
    async with running(rig) as sender:
        await rig.outcomes(2)
        async with asyncio.timeout(30):
            while sender.metrics.total("duplicate") < 2:
                await asyncio.sleep(0.05)
    assert rig.stub.requests == {f"{1:032x}": 1, f"{2:032x}": 1}


async def test_sigkill_mid_batch_then_restart_delivers_every_key_once(rig: SenderRig) -> None:
    records = [
        record(f"s{b}", "email", "welcome", *(recipient(b * 100 + i) for i in range(25)))
        for b in range(8)
    ]
    keys = {r.dispatch_id for batch in records for r in batch.recipients}
    await rig.publish(*records)
    env = {**os.environ, **rig.env(), "SENDER_CONCURRENCY": "5", "SENDER_RATE": "40"}
    command = [str(Path(sys.executable).parent / "journeys"), "sender", "--loglevel", "warning"]
    first = subprocess.Popen(command, env=env)
    async with asyncio.timeout(60):
        while len(rig.stub.delivered) < 30:
            await asyncio.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = subprocess.Popen(command, env=env)
    try:
        outcomes = await rig.outcomes(len(keys), timeout=90)
    finally:
        second.terminate()
        second.wait(30)
    assert set(outcomes) == keys and {o["outcome"] for o in outcomes.values()} == {"sent"}
    assert set(rig.stub.delivered) == keys
    resent = sum(rig.stub.requests.values()) - len(keys)
    assert 0 <= resent <= 5  # at most the requests in flight when it was killed
