"""A journey's figures as counts kept as things happen, bucketed by hour: what the worker's
timeline records, the sender's outcomes and the providers' reports add to them. Pure, so the
counts a store keeps are the counts these records give, whoever adds them up.

A figure is counted under (journey, version, hour, step): the hour (UTC, truncated) of the
record's `at`, the step it happened at, or `NO_STEP` for what belongs to the entry as a whole
(entered, converted, exited, completed, refusals to enter), which the flow page shows on the
start step. Names are bounded, so the set of keys a journey can have stays small whatever its
traffic: a reason becomes its kind (`reason_kind`) and carries no time, id or count."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

NO_STEP = "-"
# `waiting` records (reason `arrived` or `left`) keep the count of entries waiting at each step
# as a gauge: under `NOW_HOUR`, not the hour they happened, as it is "now" whatever the range.
WAITING, ARRIVED, LEFT = "waiting", "arrived", "left"
NOW_HOUR = datetime(1970, 1, 1, tzinfo=UTC)
FigureKey = tuple[str, int, datetime, str]  # journey id, version, hour, step id or NO_STEP
Increments = dict[FigureKey, Counter[str]]

HOLDOUT = "holdout:"  # the holdout's share of `entered` and `converted`
VARIANT = "variant:"  # `variant:B` entries down split branch B; `variant:B:converted` theirs
CONVERTED = ":converted"
# What the sender and the providers add (the rest comes from the worker's timeline records).
SEND_OUTCOMES = {"sent": "sent", "failed": "failed", "suppressed": "suppressed at send"}
DELIVERY_EVENTS = ("delivered", "opened", "clicked", "bounced", "complained", "unsubscribed")

# Reasons whose kind is their first words: what follows names an event, a condition or a
# count, or a time ("quiet hours until 08:00", "frequency cap 2 per 1d on email").
KIND_PREFIXES = ("exit event", "exit condition", "exit step", "frequency cap", "quiet hours")
_CUT = re.compile(r"[:(]")
_HAS_DIGIT = re.compile(r"\d")
MAX_KIND = 48


def reason_kind(reason: str | None) -> str:
    """A reason as a bounded figure name: one of `KIND_PREFIXES` when it starts with it, else
    its text before the first ':' or '(', without the words that hold a digit (times, dates,
    versions, counts), at most `MAX_KIND` characters. '.' and '$' (which a store reads as a path
    or an operator) become '_'. So "re-entry blocked: cooldown until 2026-11-02 09:00 UTC" is
    "re-entry blocked" and "version 2 archived: users asked to exit" is "version archived";
    "unsubscribed from product_updates" stays whole (channels and topics are few)."""
    if not reason:
        return "unknown"
    for prefix in KIND_PREFIXES:
        if reason.startswith(prefix):
            return prefix
    head = _CUT.split(reason, maxsplit=1)[0]
    words = [word for word in head.split() if not _HAS_DIGIT.search(word)]
    kind = " ".join(words)[:MAX_KIND].strip() or "unknown"
    return kind.replace(".", "_").replace("$", "_")


def hour_of(at: datetime | str) -> datetime:
    """The UTC hour `at` falls in (a record's ISO 8601 text or a datetime)."""
    moment = datetime.fromisoformat(at.replace("Z", "+00:00")) if isinstance(at, str) else at
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _first_word(reason: str | None) -> str:
    """`path a: ...` -> `a`; `split branch b` -> `b` (path and branch ids hold no spaces)."""
    head = (reason or "").split(":", 1)[0].split()
    return head[-1] if head else "unknown"


def timeline_figures(record: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(step, figure) for each count one timeline record adds: an `Analytics` effect's record or
    the timeline document of one. Sends and timers add none here: the sender counts what it
    actually sent. Every analytics record but `waiting` (a gauge: see `increments`) adds one
    at least."""
    if record.get("kind") != "analytics" or record["event"] == WAITING:
        return []
    event, reason = str(record["event"]), record.get("reason")
    step = record.get("step_id") or NO_STEP
    holdout = bool(record.get("holdout"))
    variants: Mapping[str, str] = record.get("variants") or {}
    found: list[tuple[str, str]] = []
    if event in ("entered", "converted"):
        found.append((step, event))
        if holdout:
            found.append((step, HOLDOUT + event))
        if event == "converted":
            found += [
                (split, f"{VARIANT}{branch}{CONVERTED}") for split, branch in variants.items()
            ]
    elif event in ("exited", "suppressed", "completed", "not_entered"):
        found += [(step, event), (step, f"{event}:{reason_kind(reason)}")]
    elif event == "waited":
        if reason == "timed out":
            found.append((step, "timed out"))
        elif (reason or "").startswith("performed "):
            found.append((step, "performed"))
        else:
            found.append((step, f"waited:{reason_kind(reason)}"))
    elif event == "path_chosen" and variants:
        found += [(split, f"{VARIANT}{branch}") for split, branch in variants.items()]
    elif event == "path_chosen":
        found.append((step, f"won:{_first_word(reason)}"))
    elif event == "path_dropped":
        found.append((step, f"dropped:{_first_word(reason)}"))
    elif event == "path_skipped":
        found.append((step, f"skipped:{_first_word(reason)}"))
    elif event == "decided":
        found.append((step, "decided:yes" if (reason or "").startswith("yes") else "decided:no"))
    else:
        found.append((step, event))  # entry_limited, and any event added later
    return found


def increments(records: Iterable[Mapping[str, Any]]) -> Increments:
    """The counts a batch of timeline records adds, per (journey, version, hour, step)."""
    counts: Increments = {}
    for record in records:
        if record.get("kind") == "analytics" and record["event"] == WAITING:
            change = 1 if record.get("reason") == ARRIVED else -1
            key = (str(record["journey_id"]), int(record["journey_version"]), NOW_HOUR)
            step = record.get("step_id") or NO_STEP
            counts.setdefault((*key, step), Counter())[WAITING] += change
            continue
        figures = timeline_figures(record)
        if not figures:
            continue
        journey, version = str(record["journey_id"]), int(record["journey_version"])
        hour = hour_of(record["at"])
        for step, name in figures:
            counts.setdefault((journey, version, hour, step), Counter())[name] += 1
    return counts


def send_outcome_figures(outcome: str, reason: str | None) -> list[str]:
    """What one settled send adds at its step: `sent`, `failed`, or `suppressed at send` and
    its reason's kind (an address on the suppression list, an unsubscribe seen at the last
    moment)."""
    name = SEND_OUTCOMES.get(outcome)
    if name is None:
        return []
    return [name, f"{name}:{reason_kind(reason)}"] if outcome == "suppressed" else [name]


def totals(figures: Mapping[str, Mapping[str, int]]) -> Counter[str]:
    """One version's counts summed over its steps."""
    summed: Counter[str] = Counter()
    for counts in figures.values():
        summed.update(counts)
    return summed
