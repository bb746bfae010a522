"""Publishes user events from a JSONL file to `user-events`, keyed by user id, each validated
against the contract first: a bad line is reported with its line number and nothing is sent."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from app.config import Settings
from app.dispatch.record import utc_text
from app.streams.producer import new_producer
from app.topics import RecordError, load_contract


@dataclass(frozen=True)
class EventLineError(ValueError):
    path: str
    line: int
    error: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.error}"


def read_events(path: Path) -> list[dict[str, Any]]:
    contract = load_contract("user-events")
    events = []
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            events.append(contract.decode(line))
        except RecordError as error:
            raise EventLineError(str(path), number, str(error)) from None
    return events


def rebased(events: Iterable[dict[str, Any]], end: datetime) -> list[dict[str, Any]]:
    """The same events with the same gaps between them, the last one happening at `end` (so no
    event is dated in the future)."""
    events = list(events)
    if not events:
        return events
    times = [datetime.fromisoformat(e["at"]) for e in events]
    shift = end - max(times)
    return [{**e, "at": utc_text(t + shift)} for e, t in zip(events, times, strict=True)]


async def publish(settings: Settings, events: list[dict[str, Any]]) -> int:
    producer = new_producer(settings)
    await producer.start()
    try:
        topic = settings.topic("user-events")
        futures = [
            await producer.send(topic, orjson.dumps(event), key=event["user_id"].encode())
            for event in events
        ]
        for future in futures:
            await future
    finally:
        await producer.stop()
    return len(events)
