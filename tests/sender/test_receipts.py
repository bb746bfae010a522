"""Expo push receipts, polled by the sender: the push channel keeps each ticket, the poller reads
the receipts from the provider stub and publishes message_delivered, or message_bounced (hard)
for a token Expo says is not registered, once each."""

from __future__ import annotations

import asyncio
import dataclasses

import orjson
from aiokafka import AIOKafkaConsumer

from app.store.deliveries import PushTickets
from app.store.mongo import close_client, new_client
from tests.sender.conftest import recipient, record, running


async def user_events(settings, count: int, timeout: float = 30) -> list[dict]:
    consumer = AIOKafkaConsumer(
        settings.topic("user-events"),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    records: list[dict] = []
    try:
        async with asyncio.timeout(timeout):
            while len(records) < count:
                batch = await consumer.getmany(timeout_ms=300)
                records += [orjson.loads(m.value) for ms in batch.values() for m in ms]
        batch = await consumer.getmany(timeout_ms=1500)  # and no more
        records += [orjson.loads(m.value) for ms in batch.values() for m in ms]
    finally:
        await consumer.stop()
    return records


async def test_receipts_become_delivery_events(rig) -> None:
    rig.sender_settings = dataclasses.replace(
        rig.sender_settings,
        push_receipts_url=f"http://127.0.0.1:{rig.port}/push/getReceipts",
        push_receipts_interval=0.3,
    )
    rig.stub.unregistered_tokens.add("tok-dead")
    alive, dead = recipient(1, address="tok-alive"), recipient(2, address="tok-dead")
    async with running(rig):
        await rig.publish(record("nudge", "push", "add_class_reminder", alive, dead))
        outcomes = await rig.outcomes(2)
        events = await user_events(rig.settings, 2)
    assert outcomes[alive.dispatch_id]["provider_id"] == f"ticket-{alive.dispatch_id}"
    assert outcomes[alive.dispatch_id]["journey_version"] == 1
    by_user = {e["user_id"]: e for e in events}
    assert len(events) == 2
    assert by_user["u-1"]["name"] == "message_delivered"
    assert by_user["u-2"]["name"] == "message_bounced"
    assert by_user["u-2"]["properties"] == {
        "dispatch_id": dead.dispatch_id,
        "journey_id": "journey",
        "journey_version": 1,
        "step_id": "nudge",
        "channel": "push",
        "provider": "expo",
        "bounce_type": "hard",
    }
    client = new_client(rig.settings)
    try:
        assert await PushTickets(client[rig.settings.mongo_db]).pending(10) == {}
    finally:
        await close_client(client)
