"""The sender: consumes `send` in a consumer group and delivers every recipient of every dispatch
record through one pooled aiohttp session. A record's offset is committed only after each of its
recipients is delivered, dead-lettered or recorded as suppressed, so a crash redelivers it, and
the ledger makes the redelivery send nothing twice."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field

import aiohttp
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from app.config import SenderSettings, Settings
from app.dispatch.record import DispatchRecord, DispatchStep, Recipient
from app.redis_client import new_redis
from app.retry import Backoff, retry_transient
from app.sender.channels import (
    Channel,
    Delivery,
    PermanentError,
    SuppressedError,
    TransientError,
    channels_from,
)
from app.sender.ledger import DeliveryLedger
from app.sender.limits import CircuitBreaker, RateLimiter
from app.sender.templates import RenderError, TemplateStore
from app.store.deliveries import Outcome
from app.store.mongo import close_client, new_client
from app.streams.dead_letters import DeadLetter, DeadLetterWriter
from app.streams.producer import new_producer
from app.topics import RecordError, load_contract

log = logging.getLogger(__name__)


@dataclass
class SenderMetrics:
    records: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


@dataclass(frozen=True)
class Settled:
    """How one recipient's delivery ended: `error` says why it was not sent (None if it was),
    `locale` is the template variant rendered (None if rendering failed)."""

    outcome: str  # sent | failed | suppressed
    attempts: int
    locale: str | None
    error: Exception | None = None


class Sender:
    def __init__(
        self,
        settings: Settings,
        sender_settings: SenderSettings,
        channels: dict[str, Channel] | None = None,
    ) -> None:
        self.settings = settings
        self.sender_settings = sender_settings
        self.channels = channels or channels_from(sender_settings)
        self.metrics = SenderMetrics()
        self.templates = TemplateStore(
            sender_settings.templates_dir, sender_settings.default_locale
        )
        self.owner = uuid.uuid4().hex
        self._breakers = {
            name: CircuitBreaker(sender_settings.breaker_failures, sender_settings.breaker_cooldown)
            for name in self.channels
        }
        self._stopping = asyncio.Event()
        self._backoff = Backoff(base=0.2, cap=10.0)

    async def run(self) -> None:
        """Consumes until `stop()`; the record in hand is finished and committed first."""
        s, ss = self.settings, self.sender_settings
        mongo = new_client(s)
        redis = new_redis(s)
        producer = new_producer(s)
        consumer = AIOKafkaConsumer(
            s.topic("send"),
            bootstrap_servers=s.kafka_bootstrap,
            group_id=ss.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=20,
        )
        await retry_transient(producer.start, what="starting the Kafka producer")
        await retry_transient(consumer.start, what="starting the Kafka consumer")
        self.ledger = DeliveryLedger(redis, mongo[s.mongo_db], s.redis_prefix)
        await retry_transient(
            self.ledger.deliveries.ensure_indexes, what="creating delivery indexes"
        )
        self.limiter = RateLimiter(redis, s.redis_prefix, ss.rate_per_second)
        self.dead_letters = DeadLetterWriter(producer, s, "sender")
        timeout = aiohttp.ClientTimeout(total=ss.timeout_seconds)
        connector = aiohttp.TCPConnector(limit=ss.concurrency * 2)
        try:
            async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
                self.session = session
                while not self._stopping.is_set():
                    batches = await consumer.getmany(timeout_ms=500)
                    for partition, messages in batches.items():
                        for message in messages:
                            if self._stopping.is_set():
                                break
                            await self.handle(message)
                            await consumer.commit({partition: message.offset + 1})
        finally:
            await consumer.stop()
            await producer.stop()
            await redis.aclose()
            await close_client(mongo)

    def stop(self) -> None:
        self._stopping.set()

    async def handle(self, message: ConsumerRecord) -> None:
        """Settles every recipient of one dispatch record (never raises for a bad record)."""
        self.metrics.records += 1
        try:
            data = load_contract("send").decode(message.value)
        except RecordError as error:
            await self._dead_letter(message, error, None)
            return
        record = DispatchRecord.from_record(data)
        done = await retry_transient(
            lambda: self.ledger.recorded([r.dispatch_id for r in record.recipients]),
            what="reading the delivery ledger",
        )
        for recipient in record.recipients:
            if recipient.dispatch_id in done:
                self.metrics.count("duplicate")
        gate = asyncio.Semaphore(self.sender_settings.concurrency)

        async def settle(recipient: Recipient) -> None:
            async with gate:
                await self._settle(message, record, recipient)

        await asyncio.gather(*(settle(r) for r in record.recipients if r.dispatch_id not in done))

    async def _settle(
        self, message: ConsumerRecord, record: DispatchRecord, recipient: Recipient
    ) -> None:
        """One recipient from start to end: render, claim, deliver with retries, record."""
        step = record.step
        try:
            rendered = self.templates.render(
                step.template_id, recipient.locale, recipient.variables
            )
        except RenderError as error:
            settled = Settled("failed", attempts=0, locale=None, error=error)
        else:
            await self._claim(recipient.dispatch_id)
            settled = await self._deliver(
                Delivery(recipient.dispatch_id, step.channel, recipient, rendered, step.webhook)
            )
        if settled.outcome == "failed" and settled.error is not None:
            await self._dead_letter(message, settled.error, recipient.dispatch_id)
        await self._record(step, recipient, settled)

    async def _claim(self, dispatch_id: str) -> None:
        """A claim taken before means a sender crashed between its send and its record: the
        send goes again, with the same Idempotency-Key."""
        if not await retry_transient(
            lambda: self.ledger.claim(dispatch_id, self.owner), what="claiming a delivery"
        ):
            log.warning("%s was claimed before (a crashed sender?): resending with the same key",
                        dispatch_id)  # fmt: skip

    async def _deliver(self, delivery: Delivery) -> Settled:
        """Attempts until the provider accepts, refuses for good, or `max_attempts` transient
        failures in a row, waiting for the rate limit and the circuit breaker before each."""
        channel = self.channels[delivery.channel]
        breaker = self._breakers[delivery.channel]
        locale = delivery.message.locale
        attempts = 0
        while True:
            attempts += 1
            await self._wait_for_capacity(delivery.channel, breaker)
            try:
                await channel.deliver(self.session, delivery)
            except SuppressedError as error:
                return Settled("suppressed", attempts=attempts, locale=locale, error=error)
            except PermanentError as error:
                return Settled("failed", attempts=attempts, locale=locale, error=error)
            except TransientError as error:
                breaker.failed(time.monotonic())
                if attempts >= self.sender_settings.max_attempts:
                    gave_up = RuntimeError(f"gave up after {attempts} attempts: {error}")
                    return Settled("failed", attempts=attempts, locale=locale, error=gave_up)
                await asyncio.sleep(max(error.retry_after or 0.0, self._backoff.delay(attempts)))
                continue
            breaker.succeeded()
            return Settled("sent", attempts=attempts, locale=locale)

    async def _record(self, step: DispatchStep, recipient: Recipient, settled: Settled) -> None:
        outcome = Outcome(
            dispatch_id=recipient.dispatch_id,
            outcome=settled.outcome,
            user_id=recipient.user_id,
            journey_id=step.journey_id,
            step_id=step.step_id,
            channel=step.channel,
            template_id=step.template_id,
            locale=settled.locale or recipient.locale,
            attempts=settled.attempts,
            reason=None if settled.error is None else str(settled.error),
        )
        await retry_transient(lambda: self.ledger.record(outcome), what="recording a delivery")
        self.metrics.count(settled.outcome)

    async def _wait_for_capacity(self, channel: str, breaker: CircuitBreaker) -> None:
        while not breaker.allows(time.monotonic()):
            await asyncio.sleep(min(1.0, breaker.wait_time(time.monotonic())) or 0.05)
        while (wait := await self.limiter.wait_time(channel)) > 0:
            await asyncio.sleep(wait)

    async def _dead_letter(
        self, message: ConsumerRecord, error: Exception, dispatch_id: str | None
    ) -> None:
        letter = DeadLetter.from_error(
            error,
            source_topic="send",
            original=message.value,
            key=message.key,
            partition=message.partition,
            offset=message.offset,
            recipient=dispatch_id,
        )
        await retry_transient(
            lambda: self.dead_letters.write([letter]), what="writing a dead letter"
        )
        self.metrics.dead_letters += 1
