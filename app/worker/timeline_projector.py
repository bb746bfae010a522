"""The timeline projector: the `timeline` topic into the `timeline` collection, a whole batch in
one unordered insert, so the emitter's hot path writes only sends to MongoDB.

It runs as an agent of the worker app, with its own lock and the worker's rules for a batch
(transient failures retried with backoff, bad records dead-lettered with the reason, the batch's
offsets committed only once its documents are written). A record written twice (a replayed
outbox, a batch redelivered after a crash) leaves one document: the effect id is its `_id`.

Each batch is first counted in the journeys' figures (app/store/figures.py `add_new`), then
inserted: counting before the insert keeps the figures exact through a crash between the two (the
redelivered batch is not in the timeline yet, its offsets are counted already), and an effect the
timeline already holds (an outbox emitted twice) is not counted again."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.store.figures import JourneyFigures
from app.store.timeline import Timeline
from app.streams.dead_letters import DeadLetter
from app.streams.producer import MAX_REQUEST_BYTES
from app.topics import load_contract
from app.worker.processor import DECODE_ERRORS, InputRecord, dead_letter

SOURCE = "timeline"


def timeline_documents(record: dict[str, Any]) -> list[dict[str, Any]]:
    """A `timeline` topic record's entries as the collection keeps them (the emitter's
    `timeline_entry`)."""
    user_id, recorded_at = record["user_id"], datetime.fromisoformat(record["recorded_at"])
    return [
        {
            "_id": entry["effect_id"],
            "user_id": user_id,
            "recorded_at": recorded_at,
            **entry["effect"],
        }
        for entry in record["entries"]
    ]


class TimelineProjector:
    def __init__(self, timeline: Timeline, figures: JourneyFigures) -> None:
        self._timeline = timeline
        self._figures = figures
        self._contract = load_contract(SOURCE)

    async def process(self, records: list[InputRecord], now: datetime) -> list[DeadLetter]:
        """Projects the batch; returns the records that must go to the dead-letter topic.
        Transient failures propagate, and the whole batch can then be retried safely."""
        letters: list[DeadLetter] = []
        # effect id -> (partition, offset, document) of its first record in the batch
        documents: dict[str, tuple[int, int, dict[str, Any]]] = {}
        for record in records:
            try:
                decoded = timeline_documents(
                    # Any record the emitter could produce: MAX_RECORD_BYTES is for outside input.
                    self._contract.decode(record.value, MAX_REQUEST_BYTES)
                )
            except DECODE_ERRORS as error:
                letters.append(dead_letter(record, error))
                continue
            for document in decoded:
                documents.setdefault(document["_id"], (record.partition, record.offset, document))
        if documents:
            await self._figures.add_new(list(documents.values()))
            await self._timeline.record([document for _, _, document in documents.values()])
        return letters
