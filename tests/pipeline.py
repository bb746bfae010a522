"""A live pipeline for one test: its own topics, database, Redis keys and consumer groups, and
real `journeys worker` and `journeys sender` processes that the test can SIGKILL and restart."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from app.config import Settings
from app.store.deploy import deploy_text
from app.store.mongo import close_client, new_client
from app.store.rules import RulesRegistry
from app.store.users import UserStore
from app.store.versions import PUBLISHED
from app.streams.publish import publish
from app.topic_admin import apply_topics
from app.topics import TOPIC_NAMES

ROOT = Path(__file__).resolve().parents[1]
JOURNEYS = str(Path(sys.executable).parent / "journeys")


class Pipeline:
    def __init__(self, settings: Settings, env: dict[str, str], logs: Path) -> None:
        self.settings = settings
        self.env = env
        self.logs = logs
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._consumers: dict[str, AIOKafkaConsumer] = {}

    def start(self, service: str, name: str | None = None) -> None:
        """Starts `journeys worker` or `journeys sender` with the pipeline's environment, known
        as `name` (the service's name unless several of it run: they join one group)."""
        name = name or service
        log = self.logs.open("ab")
        self.processes[name] = subprocess.Popen(
            [JOURNEYS, service, "--loglevel", "warning"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def start_worker(self) -> None:
        self.start("worker")

    def kill(self, name: str) -> None:
        """SIGKILL: no shutdown hook runs, nothing is flushed or committed."""
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        process.wait()

    def kill_worker(self) -> None:
        self.kill("worker")

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    async def deploy(self, path: Path, status: str = PUBLISHED) -> None:
        """Deploys a journey file or a rules file, as `journeys deploy` does."""
        client = new_client(self.settings)
        try:
            await deploy_text(client[self.settings.mongo_db], path.read_text(), str(path), status)
        finally:
            await close_client(client)

    async def deploy_rules(self, text: str) -> None:
        """Global rules (quiet hours, frequency caps) for every journey the workers run."""
        client = new_client(self.settings)
        try:
            await RulesRegistry(client[self.settings.mongo_db]).deploy(text, "<global rules>")
        finally:
            await close_client(client)

    async def publish(self, events: list[dict[str, Any]], at_event_times: bool = False) -> None:
        await publish(self.settings, events, at_event_times)

    async def read(self, topic: str, timeout: float, until: int | None = None) -> list[dict]:
        """Records on one of the pipeline's topics, read from the start; waits until `until`
        records arrived or `timeout` seconds passed."""
        consumer = self._consumers.get(topic)
        if consumer is None:
            consumer = AIOKafkaConsumer(
                self.settings.topic(topic),
                bootstrap_servers=self.settings.kafka_bootstrap,
                auto_offset_reset="earliest",
            )
            await consumer.start()
            self._consumers[topic] = consumer
            consumer.records = []  # type: ignore[attr-defined]
        records: list[dict] = consumer.records  # type: ignore[attr-defined]
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            if until is not None and len(records) >= until:
                break
            batch = await consumer.getmany(timeout_ms=200)
            records += [orjson.loads(m.value) for ms in batch.values() for m in ms]
        return list(records)

    async def stored(self, user_ids: list[str], timeout: float) -> None:
        """Waits until each of these users has a document: the worker applied an input of
        theirs (whether it came through user-events-by-user or was applied in place)."""
        client = new_client(self.settings)
        users = UserStore(client[self.settings.mongo_db], self.settings.mongo_bulk_ops).collection
        try:
            async with asyncio.timeout(timeout):
                while await users.count_documents({"_id": {"$in": user_ids}}) < len(user_ids):
                    await asyncio.sleep(0.2)
        finally:
            await close_client(client)

    async def dispatched(self, timeout: float, until: int | None = None) -> list[dict]:
        """Every recipient of every dispatch record so far, flattened, with the record's step;
        waits until `until` distinct dispatch ids arrived or `timeout` seconds passed. (The
        topic may carry a dispatch id twice, after a crash or a Redis restart: the sender
        drops the repeat.)"""
        deadline = asyncio.get_running_loop().time() + timeout
        recipients = _flatten(await self.read("send", 0.2))
        while asyncio.get_running_loop().time() < deadline and (
            until is None or len({r["dispatch_id"] for r in recipients}) < until
        ):
            recipients = _flatten(await self.read("send", 0.5))
        return recipients

    async def close(self) -> None:
        self.stop_all()
        for consumer in self._consumers.values():
            await consumer.stop()


def signups(prefix: str, count: int, end: datetime) -> list[dict]:
    """Users signing up a second before `end`, every third adding a class at `end`; platforms
    and locales vary so every path of the demo journey is taken."""
    locales = ["en-GB", "fr-FR", "de", "pt-BR"]
    events = []
    for i in range(count):
        user = f"{prefix}-u{i:03d}"
        events.append(
            {
                "event_id": f"{user}-signup",
                "user_id": user,
                "name": "signed_up",
                "at": (end - timedelta(seconds=1)).isoformat(),
                "attributes": {
                    "email": f"{user}@x.test",
                    "first_name": user,
                    "platform": ["ios", "web"][i % 2],
                    "push_token": f"tok-{user}",
                },
                "locale": locales[i % len(locales)],
            }
        )
        if i % 3 == 0:
            events.append(
                {
                    "event_id": f"{user}-class",
                    "user_id": user,
                    "name": "added_class",
                    "at": end.isoformat(),
                }
            )
    return events


def _flatten(records: list[dict]) -> list[dict]:
    return [
        {**recipient, "journey_id": r["journey_id"], "step_id": r["step_id"]}
        for r in records
        for recipient in r["recipients"]
    ]


@asynccontextmanager
async def live_pipeline(servers: Settings, tmp_path: Path) -> AsyncIterator[Pipeline]:
    run = uuid.uuid4().hex[:10]
    settings = dataclasses.replace(
        servers,
        topic_prefix=f"test-{run}-",
        mongo_db=f"test_{run}",
        redis_prefix=f"test-{run}",
    )
    await apply_topics(settings)
    env = {
        **os.environ,
        "TOPIC_PREFIX": settings.topic_prefix,
        "MONGO_DB": settings.mongo_db,
        "REDIS_URL": settings.redis_url,
        "REDIS_PREFIX": settings.redis_prefix,
        "WORKER_APP_ID": f"test-worker-{run}",
        "SENDER_GROUP_ID": f"test-sender-{run}",
        "JOURNEYS_POLL_INTERVAL": "0.5",
        "WORKER_BATCH_WITHIN": "0.1",
        "BATCHER_INTERVAL": "0.1",
        "TIMER_PUMP_INTERVAL": "0.1",
    }
    pipeline = Pipeline(settings, env, tmp_path / "worker.log")
    try:
        yield pipeline
    finally:
        await pipeline.close()
        if pipeline.logs.exists():
            sys.stderr.write(pipeline.logs.read_text()[-4000:])
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([settings.topic(name) for name in TOPIC_NAMES])
        finally:
            await admin.close()
        client = new_client(settings)
        await client.drop_database(settings.mongo_db)
        await close_client(client)
