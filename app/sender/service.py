"""The sender: consumes `send` in a consumer group and delivers every recipient of every dispatch
record through one pooled aiohttp session. A record's offset is committed only after it and every
record before it in its partition have each recipient delivered, dead-lettered or recorded as
suppressed, so a crash redelivers it, and the ledger makes the redelivery send nothing twice.

Up to `records_in_flight` records are handled at once and each channel has its own lane of
`concurrency` deliveries and its own rate, so records of a slow channel (a low rate, a provider
that is down) do not hold back the other channels' until they fill every record slot."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from app.callbacks.handler import DeliveryEvents
from app.config import SenderSettings, Settings
from app.dispatch.record import DispatchRecord, DispatchStep, Recipient
from app.dispatch.unsubscribe import UnsubscribeLinks
from app.keyspace import Keyspace
from app.metrics_snapshots import PUBLISH_INTERVAL_SECONDS, publish_snapshot
from app.redis_client import RedisClient, open_redis
from app.retry import TRANSIENT_ERRORS, Backoff, retry_transient
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
from app.sender.receipts import ReceiptPoller
from app.sender.templates import RenderError, TemplateStore
from app.store.deliveries import Outcome, PushTickets
from app.store.mongo import close_client, new_client
from app.store.schema import ensure_indexes
from app.store.suppressions import SuppressionList
from app.store.users import UserStore
from app.streams.dead_letters import DeadLetter, DeadLetterWriter
from app.streams.producer import new_producer
from app.topics import RecordError, load_contract

log = logging.getLogger(__name__)

# Per partition, the records being handled in offset order, each with its task.
InFlight = dict[TopicPartition, deque[tuple[int, asyncio.Task[None]]]]


@dataclass
class SenderMetrics:
    """The sender's counters, published to Redis for the API's /metrics."""

    records: int = 0
    outcomes: dict[tuple[str, str], int] = field(default_factory=dict)  # (channel, outcome)
    dead_letters: int = 0

    def count(self, channel: str, outcome: str) -> None:
        self.outcomes[channel, outcome] = self.outcomes.get((channel, outcome), 0) + 1

    def total(self, outcome: str) -> int:
        return sum(n for (_, counted), n in self.outcomes.items() if counted == outcome)

    def snapshot(self) -> dict[str, object]:
        return {
            "records": self.records,
            "dead_letters": self.dead_letters,
            "deliveries": [
                {"channel": channel, "outcome": outcome, "count": count}
                for (channel, outcome), count in sorted(self.outcomes.items())
            ],
        }


@dataclass(frozen=True)
class Settled:
    """How one recipient's delivery ended: `error` says why it was not sent (None if it was),
    `locale` is the template variant rendered (None if rendering failed)."""

    outcome: str  # sent | failed | suppressed
    attempts: int
    locale: str | None
    error: Exception | None = None
    provider_id: str | None = None  # the provider's id of the message (an Expo ticket id)


class Sender:
    def __init__(
        self,
        settings: Settings,
        sender_settings: SenderSettings,
        channels: dict[str, Channel] | None = None,
    ) -> None:
        if (in_flight := sender_settings.records_in_flight) < 1:
            raise ValueError(f"SENDER_RECORDS_IN_FLIGHT is {in_flight}: expected 1 or more")
        self.settings = settings
        self.sender_settings = sender_settings
        self.channels = channels or channels_from(sender_settings)
        self.metrics = SenderMetrics()
        self.templates = TemplateStore(
            sender_settings.templates_dir, sender_settings.default_locale
        )
        self.owner = uuid.uuid4().hex
        self.sender_id = self.owner[:12]  # its metrics' `sender` label
        self.links = UnsubscribeLinks.of(settings)
        self._breakers = {
            name: CircuitBreaker(sender_settings.breaker_failures, sender_settings.breaker_cooldown)
            for name in self.channels
        }
        self._settling: set[str] = set()  # dispatch ids being settled by this sender
        self._lanes = {
            name: asyncio.Semaphore(sender_settings.concurrency) for name in self.channels
        }
        self._stopping = asyncio.Event()
        self._backoff = Backoff(base=0.2, cap=10.0)

    async def run(self) -> None:
        """Consumes until `stop()`; the records in hand are finished and committed first."""
        s, ss = self.settings, self.sender_settings
        mongo = new_client(s)
        redis = await open_redis(s)
        producer = new_producer(s)
        consumer = AIOKafkaConsumer(
            s.topic("send"),
            bootstrap_servers=s.kafka_bootstrap,
            group_id=ss.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=20,
            session_timeout_ms=int(ss.session_timeout_seconds * 1000),
            heartbeat_interval_ms=int(ss.heartbeat_interval_seconds * 1000),
        )
        await retry_transient(producer.start, what="starting the Kafka producer")
        await retry_transient(consumer.start, what="starting the Kafka consumer")
        self.ledger = DeliveryLedger(redis, mongo[s.mongo_db], s.redis_prefix)
        await retry_transient(
            lambda: ensure_indexes(mongo[s.mongo_db]), what="creating the indexes"
        )
        self.suppressions = SuppressionList(mongo[s.mongo_db])
        self.users = UserStore(mongo[s.mongo_db], s.mongo_bulk_ops)
        self.limiter = RateLimiter(redis, s.redis_prefix, ss.channel_rates())
        self.dead_letters = DeadLetterWriter(producer, s, "sender")
        database = mongo[s.mongo_db]
        self.tickets = PushTickets(database)
        timeout = aiohttp.ClientTimeout(total=ss.timeout_seconds)
        connector = aiohttp.TCPConnector(limit=ss.concurrency * len(self.channels))
        poller: asyncio.Task[None] | None = None
        publisher = asyncio.create_task(self._publish_metrics(redis))
        try:
            async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
                self.session = session
                if ss.push_receipts_url:
                    receipts = ReceiptPoller(
                        ss.push_receipts_url,
                        ss.push_token,
                        self.tickets,
                        DeliveryEvents(s, database, redis, producer),
                    )
                    poller = asyncio.create_task(receipts.run(session, ss.push_receipts_interval))
                await self._consume(consumer)
        finally:
            if poller is not None:
                poller.cancel()
            publisher.cancel()
            await self._publish_metrics_once(redis)  # the last figures, for a clean stop
            await consumer.stop()
            await producer.stop()
            await redis.aclose()
            await close_client(mongo)

    def stop(self) -> None:
        self._stopping.set()

    async def _publish_metrics(self, redis: RedisClient) -> None:
        while True:
            await self._publish_metrics_once(redis)
            await asyncio.sleep(PUBLISH_INTERVAL_SECONDS)

    async def _publish_metrics_once(self, redis: RedisClient) -> None:
        """Logs and goes on: the next round publishes the figures, nothing is lost by waiting."""
        key = Keyspace(self.settings.redis_prefix).sender_metrics()
        try:
            await publish_snapshot(redis, key, self.sender_id, self.metrics.snapshot(), time.time())
        except TRANSIENT_ERRORS as error:
            log.warning("publishing metrics: transient failure %r; next round retries", error)
        except Exception:
            log.exception("publishing metrics failed; next round retries")

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        """Fetches while a record slot is free, handles each record in a task of its own, and
        commits what is finished; on stop, the records in hand are finished and committed."""
        in_flight: InFlight = {}
        try:
            while not self._stopping.is_set():
                room = self.sender_settings.records_in_flight - sum(map(len, in_flight.values()))
                if room > 0:
                    batches = await consumer.getmany(timeout_ms=200, max_records=room)
                    for partition, messages in batches.items():
                        handling = in_flight.setdefault(partition, deque())
                        for message in messages:
                            task = asyncio.create_task(self.handle(message))
                            handling.append((message.offset, task))
                else:
                    tasks = [task for handling in in_flight.values() for _, task in handling]
                    await asyncio.wait(tasks, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
                await self._commit_finished(consumer, in_flight)
            tasks = [task for handling in in_flight.values() for _, task in handling]
            if tasks:
                await asyncio.wait(tasks)
            await self._commit_finished(consumer, in_flight)
        finally:
            for handling in in_flight.values():
                for _, task in handling:
                    task.cancel()

    @staticmethod
    async def _commit_finished(
        consumer: AIOKafkaConsumer,
        in_flight: InFlight,
    ) -> None:
        """Commits, per partition, past the records finished with no unfinished one before them
        (a record whose handling raised stops the sender, as a failure to commit would)."""
        offsets: dict[TopicPartition, int] = {}
        for partition, handling in in_flight.items():
            while handling and handling[0][1].done():
                offset, task = handling.popleft()
                task.result()
                offsets[partition] = offset + 1
        if offsets:
            await consumer.commit(offsets)

    async def handle(self, message: ConsumerRecord) -> None:
        """Settles every recipient of one dispatch record (never raises for a bad record)."""
        self.metrics.records += 1
        try:
            data = load_contract("send").decode(message.value)
        except RecordError as error:
            await self._dead_letter(message, error, None)
            return
        record = DispatchRecord.from_record(data)
        # A dispatch id being settled here already (the same record twice in hand) is left to
        # that settling; the others are reserved before the ledger is read, so none is missed.
        mine = [r for r in record.recipients if r.dispatch_id not in self._settling]
        self._settling.update(r.dispatch_id for r in mine)
        try:
            done = await retry_transient(
                lambda: self.ledger.recorded([r.dispatch_id for r in mine]),
                what="reading the delivery ledger",
            )
        except BaseException:
            self._settling.difference_update(r.dispatch_id for r in mine)
            raise
        self._settling.difference_update(done)
        todo = [r for r in mine if r.dispatch_id not in done]
        for _ in range(len(record.recipients) - len(todo)):
            self.metrics.count(record.step.channel, "duplicate")
        lane = self._lanes[record.step.channel]
        try:
            blocked = await retry_transient(
                lambda: self._suppressed(record.step, todo),
                what="reading suppressions and subscriptions",
            )
        except BaseException:
            self._settling.difference_update(r.dispatch_id for r in todo)
            raise

        async def settle(recipient: Recipient) -> None:
            try:
                if (reason := blocked.get(recipient.dispatch_id)) is not None:
                    suppressed = Settled("suppressed", 0, None, SuppressedError(reason))
                    await self._record(record.step, recipient, suppressed)
                    return
                async with lane:
                    await self._settle(message, record, recipient)
            finally:
                self._settling.discard(recipient.dispatch_id)

        await asyncio.gather(*(settle(r) for r in todo))

    async def _suppressed(self, step: DispatchStep, recipients: list[Recipient]) -> dict[str, str]:
        """Why each recipient must not be sent to now (dispatch id -> reason), looked up for a
        whole dispatch record at once: the address on the suppression list (a hard bounce, a
        complaint, an unsubscribe), the user unsubscribed from the channel, or (but for a
        transactional send) from the step's topic, whether or not the engine saw it yet."""
        if not recipients:
            return {}
        user_ids = [r.user_id for r in recipients]
        addresses = [r.address for r in recipients if r.address]
        listed = await self.suppressions.reasons(step.channel, addresses)
        states = await self.users.subscription_states(user_ids)
        topic = None if step.transactional else step.topic
        opted_out = await self.suppressions.opted_out(topic, user_ids) if topic else set()
        reasons: dict[str, str] = {}
        for recipient in recipients:
            channels, topics = states.get(recipient.user_id, ({}, {}))
            if recipient.address in listed:
                reasons[recipient.dispatch_id] = listed[recipient.address]
            elif channels.get(step.channel) is False:
                reasons[recipient.dispatch_id] = f"unsubscribed from {step.channel}"
            elif topic is not None and (
                recipient.user_id in opted_out or topics.get(topic) is False
            ):
                reasons[recipient.dispatch_id] = f"unsubscribed from {topic}"
        return reasons

    def _unsubscribe_url(self, step: DispatchStep, recipient: Recipient) -> str | None:
        return self.links.url(
            user_id=recipient.user_id,
            channel=step.channel,
            address=recipient.address,
            topic=step.topic,
            dispatch_id=recipient.dispatch_id,
            transactional=step.transactional,
            now=datetime.now(UTC),
        )

    async def _settle(
        self, message: ConsumerRecord, record: DispatchRecord, recipient: Recipient
    ) -> None:
        """One recipient from start to end: render, claim, deliver with retries, record."""
        step = record.step
        try:
            rendered = self.templates.render(
                step.template_id,
                recipient.locale,
                recipient.variables,
                self._unsubscribe_url(step, recipient),
            )
        except RenderError as error:
            settled = Settled("failed", attempts=0, locale=None, error=error)
        else:
            await self._claim(recipient.dispatch_id)
            settled = await self._deliver(
                Delivery(recipient.dispatch_id, step.channel, recipient, rendered, step.webhook),
                step,
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

    async def _deliver(self, delivery: Delivery, step: DispatchStep) -> Settled:
        """Attempts until the provider accepts, refuses for good, or `max_attempts` transient
        failures in a row, waiting for the rate limit and the circuit breaker before each; an
        unsubscribe or suppression that arrived meanwhile stops a retry."""
        channel = self.channels[delivery.channel]
        breaker = self._breakers[delivery.channel]
        locale = delivery.message.locale
        attempts = 0
        while True:
            attempts += 1
            await self._wait_for_capacity(delivery.channel, breaker)
            if attempts > 1:
                blocked = await retry_transient(
                    lambda: self._suppressed(step, [delivery.recipient]),
                    what="reading suppressions and subscriptions",
                )
                if (reason := blocked.get(delivery.dispatch_id)) is not None:
                    return Settled("suppressed", attempts - 1, locale, SuppressedError(reason))
            try:
                provider_id = await channel.deliver(self.session, delivery)
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
            return Settled("sent", attempts=attempts, locale=locale, provider_id=provider_id)

    async def _record(self, step: DispatchStep, recipient: Recipient, settled: Settled) -> None:
        outcome = Outcome(
            dispatch_id=recipient.dispatch_id,
            outcome=settled.outcome,
            user_id=recipient.user_id,
            journey_id=step.journey_id,
            journey_version=step.journey_version,
            step_id=step.step_id,
            channel=step.channel,
            template_id=step.template_id,
            locale=settled.locale or recipient.locale,
            attempts=settled.attempts,
            reason=None if settled.error is None else str(settled.error),
            provider_id=settled.provider_id,
        )
        if step.channel == "push" and settled.provider_id is not None:
            # Before the outcome: a crash between the two leaves a ticket, never a lost one.
            ticket_id = settled.provider_id
            await retry_transient(
                lambda: self.tickets.add(ticket_id, recipient.dispatch_id, datetime.now(UTC)),
                what="keeping a push ticket",
            )
        await retry_transient(lambda: self.ledger.record(outcome), what="recording a delivery")
        self.metrics.count(step.channel, settled.outcome)

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
