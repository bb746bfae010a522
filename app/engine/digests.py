"""Digests: what a user did since a message step last sent to them, for a summary message (the
write-up's weekly summary). Per journey and step with a `digest`, the user's state keeps one
record: since when it counts, the names it counts, a count per name and the newest `latest`
events (name, time, properties). A record opens when the user enters the journey (unless it is
open already: it outlives entries, so a weekly journey's digest runs from one send to the next),
counts every event applied after that in the order events are applied (an event dated before
the last send but applied after it is reported by the next one, never twice, never lost), and
starts again at each send. Its size is bounded: at most DIGEST_LATEST_MAX events listed, each
with at most PROPERTIES_KEPT_BYTES of properties, and one count per name."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from app.engine.definitions import Digest, Journey, MessageStep
from app.engine.effects import utc_text
from app.engine.state import UserState

# An event's properties are listed only when their JSON is at most this long; larger ones are
# listed as `{}`, so a user's state stays bounded whatever the events carry.
PROPERTIES_KEPT_BYTES = 1024


def open_digests(state: UserState, journey: Journey, at: datetime) -> None:
    """On entering: each digest step of the journey counts from now, unless it counts already
    (since its last send, or since an earlier entry); an open record takes the entering
    version's names and length."""
    for step in journey.steps.values():
        if not isinstance(step, MessageStep) or step.digest is None:
            continue
        names, keep = list(step.digest.events), step.digest.latest
        records = state.digests.setdefault(journey.id, {})
        record = records.get(step.id)
        if record is None:
            records[step.id] = _record(step.digest, at)
            continue
        record["events"], record["keep"] = names, keep
        record["counts"] = {n: c for n, c in record["counts"].items() if n in names}
        record["latest"] = [e for e in record["latest"] if e["name"] in names][-keep:]


def collect(state: UserState, name: str, at: datetime, properties: dict[str, Any]) -> None:
    """An event applied: counted, and listed, by every open record that names it."""
    listed: dict[str, Any] | None = None
    for records in state.digests.values():
        for record in records.values():
            if name not in record["events"]:
                continue
            if listed is None:
                small = len(orjson.dumps(properties)) <= PROPERTIES_KEPT_BYTES
                listed = {"name": name, "at": at, "properties": properties if small else {}}
            record["counts"][name] = record["counts"].get(name, 0) + 1
            record["latest"] = [*record["latest"], dict(listed)][-record["keep"] :]


def digest_view(
    state: UserState, journey_id: str, step_id: str, digest: Digest, since: datetime
) -> dict[str, Any]:
    """The template's `digest`: `since` (when the period began), `counts` (every name the step
    counts, 0 included), `total`, and `latest` (newest first: name, at, properties). `since` is
    used when the step has no record (a state written before the step had a digest)."""
    record = state.digests.get(journey_id, {}).get(step_id)
    counts = {n: (record["counts"].get(n, 0) if record else 0) for n in digest.events}
    latest = [e for e in reversed(record["latest"] if record else []) if e["name"] in counts]
    return {
        "since": utc_text(record["since"] if record else since),
        "counts": counts,
        "total": sum(counts.values()),
        "latest": [
            {"name": e["name"], "at": utc_text(e["at"]), "properties": e["properties"]}
            for e in latest[: digest.latest]
        ],
    }


def restart(state: UserState, journey_id: str, step: MessageStep, at: datetime) -> None:
    """The step sent: its digest counts again from now."""
    assert step.digest is not None
    state.digests.setdefault(journey_id, {})[step.id] = _record(step.digest, at)


def _record(digest: Digest, since: datetime) -> dict[str, Any]:
    return {
        "since": since,
        "events": list(digest.events),
        "keep": digest.latest,
        "counts": {},
        "latest": [],
    }
