"""A sender on its own topics, database and Redis keys, a provider stub on loopback, and helpers
to publish dispatch records and wait for their outcomes."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from app.config import SenderSettings, Settings
from app.dispatch.record import DispatchRecord, DispatchStep, Recipient
from app.engine.definitions import WebhookRequest
from app.sender.service import Sender
from app.sender.stub import ProviderStub, serve
from app.store.deliveries import Deliveries
from app.store.mongo import close_client, new_client
from app.streams.producer import new_producer
from app.topic_admin import apply_topics
from app.topics import TOPIC_NAMES


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SenderRig:
    def __init__(self, settings: Settings, stub: ProviderStub, port: int) -> None:
        self.settings = settings
        self.stub = stub
        self.port = port
        self.sender_settings = SenderSettings(
            group_id=f"sender-{uuid.uuid4().hex[:8]}",
            timeout_seconds=1.0,
            max_attempts=6,
            email_url=f"http://127.0.0.1:{port}/email",
            push_url=f"http://127.0.0.1:{port}/push",
            webhook_url=f"http://127.0.0.1:{port}/webhook",
            webhook_secret=stub.webhook_secret,
            sms_url=f"http://127.0.0.1:{port}",
            sms_account_sid=stub.sms_account_sid,
            sms_auth_token=stub.sms_auth_token,
            breaker_failures=100,
        )

    def env(self) -> dict[str, str]:
        s, ss = self.settings, self.sender_settings
        return {
            "TOPIC_PREFIX": s.topic_prefix,
            "MONGO_DB": s.mongo_db,
            "REDIS_PREFIX": s.redis_prefix,
            "SENDER_GROUP_ID": ss.group_id,
            "SENDER_TIMEOUT": "1",
            "EMAIL_API_URL": ss.email_url,
            "PUSH_API_URL": ss.push_url,
            "WEBHOOK_URL": ss.webhook_url,
            "WEBHOOK_SECRET": ss.webhook_secret,
            "SMS_API_URL": ss.sms_url,
            "SMS_ACCOUNT_SID": ss.sms_account_sid,
            "SMS_AUTH_TOKEN": ss.sms_auth_token,
        }

    async def publish(self, *records: DispatchRecord, raw: list[bytes] | None = None) -> None:
        producer = new_producer(self.settings)
        await producer.start()
        try:
            for record in records:
                await producer.send_and_wait(
                    self.settings.topic("send"),
                    orjson.dumps(record.to_record()),
                    key=record.batch_id.encode(),
                )
            for value in raw or []:
                await producer.send_and_wait(self.settings.topic("send"), value, key=b"raw")
        finally:
            await producer.stop()

    async def outcomes(self, count: int, timeout: float = 30) -> dict[str, dict]:
        """Waits for `count` delivery outcomes in the ledger."""
        client = new_client(self.settings)
        try:
            deliveries = Deliveries(client[self.settings.mongo_db]).collection
            async with asyncio.timeout(timeout):
                while True:
                    found = {d["_id"]: d async for d in deliveries.find({})}
                    if len(found) >= count:
                        return found
                    await asyncio.sleep(0.2)
        finally:
            await close_client(client)


@asynccontextmanager
async def running(rig: SenderRig) -> AsyncIterator[Sender]:
    """A sender in this process, stopped (its records in hand finished) on leaving."""
    sender = Sender(rig.settings, rig.sender_settings)
    task = asyncio.create_task(sender.run())
    try:
        yield sender
    finally:
        sender.stop()
        await asyncio.wait_for(task, 30)


def record(
    step: str,
    channel: str,
    template: str,
    *recipients: Recipient,
    webhook: WebhookRequest | None = None,
) -> DispatchRecord:
    return DispatchRecord(
        DispatchStep("journey", 1, step, channel, template, webhook),
        datetime(2026, 11, 2, 9, 0, tzinfo=UTC),
        recipients,
    )


def recipient(n: int, **overrides) -> Recipient:
    values = {
        "user_id": f"u-{n}",
        "dispatch_id": f"{n:032x}",
        "locale": "en",
        "variables": {"first_name": f"User {n}"},
        "address": f"u{n}@x.test",
    }
    return Recipient(**{**values, **overrides})


@pytest.fixture
async def rig(servers: Settings) -> AsyncIterator[SenderRig]:
    run = uuid.uuid4().hex[:10]
    settings = dataclasses.replace(
        servers, topic_prefix=f"test-{run}-", mongo_db=f"test_{run}", redis_prefix=f"test-{run}"
    )
    await apply_topics(settings)
    stub = ProviderStub(
        sms_account_sid="AC-test", sms_auth_token="sms-token", webhook_secret="webhook-secret"
    )
    port = free_port()
    runner = await serve(stub, "127.0.0.1", port)
    try:
        yield SenderRig(settings, stub, port)
    finally:
        await runner.cleanup()
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        await admin.delete_topics([settings.topic(name) for name in TOPIC_NAMES])
        await admin.close()
        client = new_client(settings)
        await client.drop_database(settings.mongo_db)
        await close_client(client)
