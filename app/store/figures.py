"""A journey's figures kept as hourly counts, in `journey_figures` (see `app.engine.figures` for
what each record adds): one document per (journey, version, hour, source, writer) holding
`figures.<step>.<figure>` counts. A page for any range sums the documents of its hours, a few
per hour per writer, whatever the number of users.

Every document has exactly one writer, which is what makes the counts exact: FerretDB's
updates read the document, change it and write it back, so two writers incrementing one
document could lose a count; MongoDB's `$inc` is atomic, the rule costs it nothing.

- A consumer of a partitioned topic (the timeline projector, source `timeline`) writes the
  documents of its partition: `add` applies a batch exactly once under redelivery, as each
  document remembers the last offset it counted (`through_offset`), and `add_new` (what the
  projector calls, before its insert) also leaves out effects the timeline already holds.
  One consumer per partition is the only writer of those documents (Kafka's group
  assignment); a zombie that lost its partition would find `through_offset` moved and fail
  its batch instead of counting twice.
- The sender and the API (sources `sender`, `callbacks`) process records concurrently and have
  no offsets: each process writes documents of its own (writer: a random id per process) through
  `FigureCounter`, one write at a time per document. They count once per event by counting only
  after their own de-duplication (a new delivery outcome, a first callback); a crash between
  that and the count loses that count."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pymongo.errors import DuplicateKeyError

from app.engine.figures import NOW_HOUR, WAITING, Increments, hour_of, increments
from app.store.mongo import Database

COLLECTION = "journey_figures"
DocumentKey = tuple[str, int, datetime]  # journey id, version, hour
StepFigures = dict[str, dict[str, int]]  # step -> figure -> count


def _field(text: str) -> str:
    """A step id or figure name as one segment of a field path: '%', '.' and a leading '$'
    escaped (a store reads '.' as a path and '$' as an operator)."""
    escaped = text.replace("%", "%25").replace(".", "%2E")
    return "%24" + escaped[1:] if escaped.startswith("$") else escaped


def _unfield(segment: str) -> str:
    return segment.replace("%24", "$").replace("%2E", ".").replace("%25", "%")


def _grouped(counts: Increments) -> dict[DocumentKey, dict[str, int]]:
    """The `$inc` of each document: `figures.<step>.<figure>` -> count."""
    found: dict[DocumentKey, dict[str, int]] = {}
    for (journey, version, hour, step), names in counts.items():
        inc = found.setdefault((journey, version, hour), {})
        for name, count in names.items():
            path = f"figures.{_field(step)}.{_field(name)}"
            inc[path] = inc.get(path, 0) + count
    return found


class ChangedUnderItsWriter(RuntimeError):
    """A document moved while its only writer was applying a batch: a second consumer of the
    partition (one that lost it and has not noticed yet). The batch is redone from the store."""


class JourneyFigures:
    def __init__(self, database: Database) -> None:
        self.collection = database[COLLECTION]
        # Read by effect id only, to leave out effects counted before (see `add_new`).
        self._timeline = database["timeline"]

    @staticmethod
    def _id(key: DocumentKey, source: str, writer: str) -> str:
        journey, version, hour = key
        return f"{journey}|{version}|{hour:%Y-%m-%dT%H}|{source}|{writer}"

    @staticmethod
    def _on_insert(key: DocumentKey, source: str, writer: str) -> dict[str, Any]:
        journey, version, hour = key
        return {
            "journey_id": journey,
            "journey_version": version,
            "hour": hour,
            "source": source,
            "writer": writer,
        }

    async def add_new(
        self, records: Sequence[tuple[int, int, Mapping[str, Any]]], source: str = "timeline"
    ) -> None:
        """What the timeline projector calls for each batch, BEFORE it inserts the batch into
        the timeline collection: `(partition, offset, timeline document)` in each partition's
        offset order. A document whose `_id` (effect id) the timeline already holds is not
        counted: an outbox emitted twice (after a worker crash) puts the same effect on the
        topic at a later offset, which `add` alone would count again. Counting before the insert
        keeps it exact through a crash between the two: the redelivered batch is not in the
        timeline yet, and its offsets are counted already."""
        ids = [str(document["_id"]) for _, _, document in records]
        cursor = self._timeline.find({"_id": {"$in": ids}}, {"_id": 1})
        known = {found["_id"] async for found in cursor}
        by_partition: dict[int, list[tuple[int, Mapping[str, Any]]]] = {}
        for partition, offset, document in records:
            if document["_id"] not in known:
                by_partition.setdefault(partition, []).append((offset, document))
        await asyncio.gather(
            *(self.add(batch, source, partition) for partition, batch in by_partition.items())
        )

    async def add(
        self, records: Sequence[tuple[int, Mapping[str, Any]]], source: str, partition: int
    ) -> None:
        """Counts one consumer batch of one partition, `(offset, timeline record)` in offset
        order, exactly once however often it is redelivered and however a redelivery is cut
        into batches. Each document it touches is updated only if its `through_offset` is below
        the batch's first offset, and then takes the batch's last; when it is not (the update's
        upsert then hits the existing `_id`: already counted), the records past the document's
        `through_offset` are counted alone, conditional on that offset (a redelivery cut
        differently from the first delivery)."""
        if not records:
            return
        first, last = records[0][0], records[-1][0]
        writer = str(partition)
        by_document: dict[DocumentKey, list[tuple[int, Mapping[str, Any]]]] = {}
        for offset, record in records:
            for document in {key[:3] for key in increments([record])}:
                by_document.setdefault(document, []).append((offset, record))
        await asyncio.gather(
            *(
                self._add_once(key, batch, source, writer, first, last)
                for key, batch in by_document.items()
            )
        )

    async def _add_once(
        self,
        key: DocumentKey,
        batch: list[tuple[int, Mapping[str, Any]]],
        source: str,
        writer: str,
        first: int,
        last: int,
    ) -> None:
        document_id = self._id(key, source, writer)
        inc = _grouped(increments(record for _, record in batch))[key]
        try:
            await self.collection.update_one(
                {"_id": document_id, "through_offset": {"$lt": first}},
                {
                    "$inc": inc,
                    "$set": {"through_offset": last},
                    "$setOnInsert": self._on_insert(key, source, writer),
                },
                upsert=True,
            )
            return
        except DuplicateKeyError:
            pass  # counted through an offset at or past `first`
        stored = await self.collection.find_one({"_id": document_id}, {"through_offset": 1})
        through = int(stored["through_offset"]) if stored else last
        rest = [record for offset, record in batch if offset > through]
        if through >= last or not rest:
            return
        result = await self.collection.update_one(
            {"_id": document_id, "through_offset": through},
            {"$inc": _grouped(increments(rest))[key], "$set": {"through_offset": last}},
        )
        if result.matched_count != 1:
            raise ChangedUnderItsWriter(f"{document_id} moved past offset {through} meanwhile")

    async def increment(self, counts: Increments, source: str, writer: str) -> None:
        """Adds `counts` to the documents of `writer` (its only writer: see `FigureCounter`)."""
        await asyncio.gather(
            *(
                self.collection.update_one(
                    {"_id": self._id(key, source, writer)},
                    {"$inc": inc, "$setOnInsert": self._on_insert(key, source, writer)},
                    upsert=True,
                )
                for key, inc in _grouped(counts).items()
            )
        )

    async def _documents(
        self, journey_id: str, version: int | None, since: datetime | None, until: datetime | None
    ) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"journey_id": journey_id}
        if version is not None:
            query["journey_version"] = version
        hours: dict[str, datetime] = {"$gt": NOW_HOUR}  # the gauges are read by `waiting`
        if since is not None:
            hours["$gte"] = hour_of(since)
        if until is not None:
            hours["$lt"] = until
        query["hour"] = hours
        fields = {"journey_version": 1, "hour": 1, "figures": 1}
        return await self.collection.find(query, fields).to_list(None)

    async def read(
        self,
        journey_id: str,
        version: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> dict[int, StepFigures]:
        """Version -> step -> figure -> count over the hours that overlap [since, until) (all
        time by default): an hour counts whole, so `since` is taken back to its hour's start."""
        summed: dict[int, dict[str, Counter[str]]] = {}
        for document in await self._documents(journey_id, version, since, until):
            steps = summed.setdefault(int(document["journey_version"]), {})
            for step, names in (document.get("figures") or {}).items():
                counts = steps.setdefault(_unfield(step), Counter())
                for name, count in names.items():
                    counts[_unfield(name)] += int(count)
        return {
            v: {step: dict(counts) for step, counts in steps.items()} for v, steps in summed.items()
        }

    async def waiting(self, journey_id: str, version: int) -> dict[str, int]:
        """Step -> entries waiting there now: the gauge `waiting` records keep, a few documents
        whatever the number of users."""
        query = {"journey_id": journey_id, "journey_version": version, "hour": NOW_HOUR}
        summed: Counter[str] = Counter()
        async for document in self.collection.find(query, {"figures": 1}):
            for step, names in (document.get("figures") or {}).items():
                summed[_unfield(step)] += int(names.get(WAITING, 0))
        return {step: count for step, count in summed.items() if count > 0}

    async def hourly(
        self, journey_id: str, since: datetime | None = None, until: datetime | None = None
    ) -> list[tuple[int, str, str, datetime, int]]:
        """(version, step, figure, hour, count) over the hours that overlap [since, until),
        sorted: the export's rows."""
        summed: Counter[tuple[int, str, str, datetime]] = Counter()
        for document in await self._documents(journey_id, None, since, until):
            version, hour = int(document["journey_version"]), hour_of(document["hour"])
            for step, names in (document.get("figures") or {}).items():
                for name, count in names.items():
                    summed[(version, _unfield(step), _unfield(name), hour)] += int(count)
        return [(*row, count) for row, count in sorted(summed.items()) if count]


class FigureCounter:
    """Counts from a process that handles records concurrently (the sender, the API): into
    documents only this process writes, one write at a time per document. Counts that arrive
    while a document is being written go together in its next write, and each `count` returns
    once its counts are stored."""

    def __init__(self, figures: JourneyFigures, source: str) -> None:
        self._figures = figures
        self._source = source
        self.writer = uuid.uuid4().hex[:12]
        # document -> (step, figure) counts not written yet, and the write that will take them
        self._pending: dict[DocumentKey, tuple[Counter[tuple[str, str]], asyncio.Future[None]]] = {}
        self._writing: dict[DocumentKey, asyncio.Task[None]] = {}

    async def count(
        self, journey_id: str, version: int, step: str, at: datetime, names: Sequence[str]
    ) -> None:
        """Adds one to each of `names` at (journey, version, hour of `at`, step)."""
        if not names:
            return
        key: DocumentKey = (journey_id, version, hour_of(at))
        if key not in self._pending:
            self._pending[key] = (Counter(), asyncio.get_running_loop().create_future())
        counts, stored = self._pending[key]
        counts.update((step, name) for name in names)
        if key not in self._writing:
            self._writing[key] = asyncio.create_task(self._drain(key))
        await asyncio.shield(stored)

    async def _drain(self, key: DocumentKey) -> None:
        try:
            while key in self._pending:
                counts, stored = self._pending.pop(key)
                increments: Increments = {}
                for (step, name), n in counts.items():
                    increments.setdefault((*key, step), Counter())[name] += n
                try:
                    await self._figures.increment(increments, self._source, self.writer)
                except Exception as error:  # handed to every caller waiting on this write
                    stored.set_exception(error)
                else:
                    stored.set_result(None)
        finally:
            del self._writing[key]
