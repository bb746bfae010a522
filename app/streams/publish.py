"""Publishes user events to `user-events`, keyed by user id (the demo's and the tests' feed)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import orjson

from app.config import Settings
from app.engine.effects import utc_text
from app.streams.producer import new_producer


def rebased(events: Iterable[dict[str, Any]], end: datetime) -> list[dict[str, Any]]:
    """The same events with the same gaps between them, the last one happening at `end` (so no
    event is dated in the future)."""
    events = list(events)
    if not events:
        return events
    times = [datetime.fromisoformat(e["at"]) for e in events]
    shift = end - max(times)
    return [{**e, "at": utc_text(t + shift)} for e, t in zip(events, times, strict=True)]


async def publish(
    settings: Settings, events: list[dict[str, Any]], at_event_times: bool = False
) -> int:
    """Publishes the events in order. With `at_event_times` each record's Kafka timestamp is
    its event's own time, as a producer replaying a log of events sets it: Journeys takes the
    timestamp as when the event reached it (see `EventTimePolicy`)."""
    producer = new_producer(settings)
    await producer.start()
    try:
        topic = settings.topic("user-events")
        futures = [
            await producer.send(
                topic,
                orjson.dumps(event),
                key=event["user_id"].encode(),
                timestamp_ms=event_millis(event) if at_event_times else None,
            )
            for event in events
        ]
        for future in futures:
            await future
    finally:
        await producer.stop()
    return len(events)


def event_millis(event: dict[str, Any]) -> int:
    """An event's time as a Kafka record timestamp."""
    return round(datetime.fromisoformat(event["at"]).timestamp() * 1000)
