"""The one place a verified provider report is handled: resolved to its send, its address put on
the suppression list when the report says never to send there again (a hard bounce, a spam
complaint, an unsubscribe), published once on `user-events`, and counted once in the journey
figures (delivered, opened, clicked, ... at the send's journey, version, step and the report's
hour). The API's callback routes and the sender's Expo receipt poller both call it."""

from __future__ import annotations

from typing import Any

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from app.callbacks.events import DeliveryEvent, suppression_reason, user_event
from app.config import Settings
from app.keyspace import Keyspace
from app.store.deliveries import Deliveries
from app.store.figures import FigureCounter, JourneyFigures
from app.store.mongo import Database
from app.store.suppressions import SuppressionList
from app.store.timeline import Timeline
from app.topics import load_contract

# How long a published report is remembered; a retry after that is still the same event id,
# which the engine recognises among a user's recent inputs.
SEEN_SECONDS = 3 * 24 * 3600
SEND_FIELDS = {
    name: 1
    for name in ("user_id", "journey_id", "journey_version", "step_id", "channel", "address")
}
PUBLISHED, DUPLICATE, UNKNOWN = "published", "duplicate", "unknown"


class DeliveryEvents:
    def __init__(
        self,
        settings: Settings,
        database: Database,
        redis: aioredis.Redis,
        producer: AIOKafkaProducer,
    ) -> None:
        self._settings = settings
        self._timeline = Timeline(database)
        self._deliveries = Deliveries(database)
        self._suppressions = SuppressionList(database)
        self._redis = redis
        self._keys = Keyspace(settings.redis_prefix)
        self._producer = producer
        self._figures = FigureCounter(JourneyFigures(database), "callbacks")

    async def resolve(self, dispatch_id: str) -> dict[str, Any] | None:
        """The send a dispatch id names: the timeline's send (recorded by the worker before the
        send reaches the sender, so before any provider can report on it), else the delivery
        ledger's document (transactional sends), else None."""
        send = await self._timeline.send(dispatch_id, SEND_FIELDS)
        return send or await self._deliveries.find(dispatch_id)

    async def handle(self, event: DeliveryEvent) -> str:
        """Publishes one verified report as a `message_*` user event, once: `published`,
        `duplicate` (published before: a provider's retry) or `unknown` (a dispatch id Journeys
        did not send, such as a test send: accepted and ignored)."""
        send = await self.resolve(event.dispatch_id)
        if send is None:
            return UNKNOWN
        reason = suppression_reason(event, send["channel"])
        if reason is not None and send.get("address"):
            await self._suppressions.add(send["channel"], send["address"], reason, event.at)
        key = self._keys.callback_event(event.event_id)
        if not await self._redis.set(key, 1, nx=True, ex=SEEN_SECONDS):
            return DUPLICATE
        record = user_event(event, send)
        contract = load_contract("user-events")
        try:
            contract.validate(record)
            await self._producer.send_and_wait(
                self._settings.topic("user-events"),
                orjson.dumps(record),
                key=contract.key_of(record),
            )
        except BaseException:
            # Not published: the provider's retry must find it unseen.
            await self._redis.delete(key)
            raise
        await self._count(event, send)
        return PUBLISHED

    async def _count(self, event: DeliveryEvent, send: dict[str, Any]) -> None:
        """Counts a report published for the first time (past the SET NX gate, so a provider's
        retry is not counted again); a crash between the publish and the count loses that one
        count. Sends recorded without a version (before versions were) are not counted."""
        if send.get("journey_version") is None:
            return
        await self._figures.count(
            send["journey_id"],
            int(send["journey_version"]),
            send["step_id"],
            event.at,
            [event.kind],
        )
