"""The repartition step, as Kafka Streams and Faust's group_by do it. Product services publish to
user-events with whatever client they have: librdkafka clients (kcat among them) hash keys with
CRC32, Java's and aiokafka's with murmur2, and some send no key or another one. This step decodes
each record (a bad one goes to the dead-letter topic) and re-produces it unchanged to
user-events-by-user, keyed by user id, on the partition `partition_of` gives, set explicitly as
for timers, with the original record's timestamp. So one worker applies a user's events and
timers, in order, whoever produced them. An event with a time zone no machine knows goes on too
(the engine applies it and the user keeps their last valid zone) and also to the dead-letter
topic, saying so."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from aiokafka import AIOKafkaProducer

from app.engine import UserEvent
from app.engine.inputs import ZONE_REFUSED, known_zone
from app.streams.dead_letters import DeadLetter
from app.topics import RecordError
from app.worker.metrics import WorkerMetrics
from app.worker.partitions import partition_of
from app.worker.processor import DECODE_ERRORS, InputRecord, dead_letter, decode

log = logging.getLogger(__name__)

REPORT_EVERY = timedelta(minutes=1)  # mis-keyed records are logged at most this often


class Repartitioner:
    def __init__(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        partitions: int,
        metrics: WorkerMetrics,
        max_record_bytes: int,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._partitions = partitions
        self._metrics = metrics
        self._max_record_bytes = max_record_bytes
        self._unreported = 0
        self._reported_at: datetime | None = None

    async def process(self, records: list[InputRecord], now: datetime) -> list[DeadLetter]:
        """Re-produces the batch's valid records and waits until Kafka acknowledged every one
        (the source offsets are committed after that); returns the dead letters."""
        letters: list[DeadLetter] = []
        futures = []
        miskeyed = 0
        for record in records:
            try:
                decoded = decode(record, self._max_record_bytes)
            except DECODE_ERRORS as error:
                letters.append(dead_letter(record, error))
                continue
            if (
                isinstance(decoded, UserEvent)
                and decoded.timezone
                and not known_zone(decoded.timezone)
            ):
                refused = RecordError(record.source, "/timezone", ZONE_REFUSED, "an IANA time zone")
                letters.append(dead_letter(record, refused))
            user_id = decoded.user_id
            key = user_id.encode()
            if record.key != key:
                miskeyed += 1
            futures.append(
                await self._producer.send(
                    self._topic,
                    record.value,
                    key=key,
                    partition=partition_of(user_id, self._partitions),
                    timestamp_ms=_millis(record.timestamp),
                )
            )
        for future in futures:
            await future
        self._metrics.repartitioned += len(futures)
        self._metrics.miskeyed += miskeyed
        self._unreported += miskeyed
        self._report(now)
        return letters

    def _report(self, now: datetime) -> None:
        """A warning now and then, with a count and no record content (it is personal data)."""
        if not self._unreported:
            return
        if self._reported_at is not None and now - self._reported_at < REPORT_EVERY:
            return
        log.warning(
            "%d user-events records had no key or a key other than their user id; they were "
            "repartitioned by user id (fix their producers' keys; metric miskeyed_records)",
            self._unreported,
        )
        self._unreported, self._reported_at = 0, now


def _millis(timestamp: datetime | None) -> int | None:
    return None if timestamp is None else round(timestamp.timestamp() * 1000)
