"""The repartition step, as Kafka Streams and Faust's group_by do it. Product services publish to
user-events with whatever client they have: librdkafka clients (kcat among them) hash keys with
CRC32, Java's and aiokafka's with murmur2, and some send no key or another one. This step decodes
each record (a bad one goes to the dead-letter topic) and re-produces it unchanged to
user-events-by-user, keyed by user id, on the partition `partition_of` gives, set explicitly as
for timers, with the original record's timestamp. So one worker applies a user's events and
timers, in order, whoever produced them. An event with a time zone no machine knows goes on too
(the engine applies it and the user keeps their last valid zone) and also to the dead-letter
topic, saying so.

A record already on that partition (a murmur2 producer keyed by user id put it there) is not
copied: user-events has the same partition count as user-events-by-user and timers, so Faust
assigns partition p of all three to one worker, which applies the record where it is. A copy
cost the worker about a sixth of its CPU per event (a produce, a fetch, a second micro-batch)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import orjson
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
        source_partitions: int = 0,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._partitions = partitions
        # user-events partitions: with another count than user-events-by-user's, every record
        # is copied (its partition p is not the by-user partition p this worker owns).
        self._in_place = source_partitions == partitions
        self._metrics = metrics
        self._max_record_bytes = max_record_bytes
        self._unreported = 0
        self._reported_at: datetime | None = None

    def split(
        self, records: list[InputRecord], now: datetime
    ) -> tuple[list[InputRecord], list[InputRecord]]:
        """The records to apply where they are, and the ones to copy (`process`). In place: a
        record naming a user whose partition it is on, with a time zone this machine knows or
        none. A record that is not even an object with a user id is copied, and so
        dead-lettered by `process`; one applied in place that fails its contract is
        dead-lettered by the engine step with the same reason."""
        in_place: list[InputRecord] = []
        moved: list[InputRecord] = []
        for record in records:
            user_id = self._user_on_partition(record)
            if user_id is None:
                moved.append(record)
            else:
                in_place.append(record)
                self._check_key(record, user_id)
        self._metrics.in_place += len(in_place)
        self._report(now)
        return in_place, moved

    def _user_on_partition(self, record: InputRecord) -> str | None:
        if not self._in_place or record.value is None:
            return None
        if len(record.value) > self._max_record_bytes:
            return None
        try:
            data = orjson.loads(record.value)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(data, dict):
            return None
        user_id, zone = data.get("user_id"), data.get("timezone")
        if zone is not None and not (isinstance(zone, str) and known_zone(zone)):
            return None
        if isinstance(user_id, str) and partition_of(user_id, self._partitions) == record.partition:
            return user_id
        return None

    async def process(self, records: list[InputRecord], now: datetime) -> list[DeadLetter]:
        """Re-produces the batch's valid records and waits until Kafka acknowledged every one
        (the source offsets are committed after that); returns the dead letters."""
        letters: list[DeadLetter] = []
        futures = []
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
            self._check_key(record, user_id)
            futures.append(
                await self._producer.send(
                    self._topic,
                    record.value,
                    key=user_id.encode(),
                    partition=partition_of(user_id, self._partitions),
                    timestamp_ms=_millis(record.timestamp),
                )
            )
        for future in futures:
            await future
        self._metrics.repartitioned += len(futures)
        self._report(now)
        return letters

    def _check_key(self, record: InputRecord, user_id: str) -> None:
        """Counts a record with no key or another key than its user id (a producer to fix)."""
        if record.key != user_id.encode():
            self._metrics.miskeyed += 1
            self._unreported += 1

    def _report(self, now: datetime) -> None:
        """A warning now and then, with a count and no record content (it is personal data)."""
        if not self._unreported:
            return
        if self._reported_at is not None and now - self._reported_at < REPORT_EVERY:
            return
        log.warning(
            "%d user-events records had no key or a key other than their user id; they were "
            "applied by user id (fix their producers' keys; metric miskeyed_records)",
            self._unreported,
        )
        self._unreported, self._reported_at = 0, now


def _millis(timestamp: datetime | None) -> int | None:
    return None if timestamp is None else round(timestamp.timestamp() * 1000)
