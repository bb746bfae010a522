"""What happened, read back: a user's timeline from `timeline` (every emitted effect) and
`deliveries` (what became of each send); a journey's per-step figures, conversions and export
from the hourly counts in `journey_figures` (app/store/figures.py), which cost the same whatever
the number of users."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bson import json_util

from app.engine.conversions import conversions_from_counts, first_branches
from app.engine.decision_tree import leaf_audiences
from app.engine.definitions import Journey
from app.engine.effects import utc_text
from app.engine.figures import NO_STEP, WAITING
from app.store.deliveries import Deliveries
from app.store.figures import JourneyFigures
from app.store.mongo import Database
from app.store.timeline import Timeline
from app.store.users import UserStore


async def user_timeline(db: Database, user_id: str) -> list[dict[str, Any]]:
    """Every transition of one user across journeys, with its time and reason, and the delivery
    outcome of each send: "why did (or didn't) this user get that message?"."""
    entries = await Timeline(db).of_user(user_id)
    outcomes = await Deliveries(db).of_user(user_id)
    items = []
    for entry in entries:
        item = {k: v for k, v in entry.items() if k not in ("_id", "recorded_at", "variables")}
        if entry["kind"] == "send":
            delivery = outcomes.get(entry["dispatch_id"])
            item["delivery"] = (
                {k: delivery[k] for k in ("outcome", "attempts", "reason")} if delivery else None
            )
        items.append(item)
    items.sort(key=lambda i: (i.get("at") or i.get("send_at") or "", i["kind"] != "analytics"))
    return items


async def step_figures(
    db: Database,
    journey_id: str,
    version: int,
    start: str,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, dict[str, int]]:
    """Per step, the counts of the hours overlapping [since, until) (all time by default):
    entered, converted, exited and completed (and their reasons) on the start step; sent,
    failed, delivered, opened, clicked, bounced, suppressed by reason at message steps; timed
    out and performed at waits, `won:P` at paths, `variant:B` at splits, `decided:yes|no` at
    yes/no decisions (see `app.engine.figures`). `waiting` is the entries waiting at each step
    now, whatever the range: a gauge the engine's `waiting` records keep."""
    store = JourneyFigures(db)
    counts = (await store.read(journey_id, version, since, until)).get(version, {})
    figures: dict[str, Counter[str]] = {}
    for step, names in counts.items():
        figures.setdefault(start if step == NO_STEP else step, Counter()).update(names)
    for step, count in (await store.waiting(journey_id, version)).items():
        figures.setdefault(step, Counter())[WAITING] = count
    return {step: dict(names) for step, names in figures.items()}


async def conversions(
    db: Database,
    journey_id: str,
    since: datetime | None = None,
    until: datetime | None = None,
    journeys: Mapping[int, Journey] | None = None,
) -> dict[str, Any]:
    """Entries and conversions per version of a journey: all, messaged, holdout, and per split
    variant (see `app.engine.conversions`), over the hours overlapping [since, until); each
    variant compared with its split's first branch in `journeys` (the versions' definitions)."""
    counts = await JourneyFigures(db).read(journey_id, None, since, until)
    defined = journeys or {}
    return {
        str(version): figures.to_json(
            first_branches(defined[version]) if version in defined else None
        )
        for version, figures in sorted(conversions_from_counts(counts).items())
    }


async def figure_rows(
    db: Database, journey_id: str, since: datetime | None = None, until: datetime | None = None
) -> list[dict[str, Any]]:
    """The export: one row per (version, step, figure, hour) with a count, for the hours
    overlapping [since, until); `-` is the step of what belongs to the entry as a whole."""
    return [
        {"version": version, "step": step, "figure": name, "hour": utc_text(hour), "count": count}
        for version, step, name, hour, count in await JourneyFigures(db).hourly(
            journey_id, since, until
        )
    ]


async def audience_per_leaf(
    users: UserStore, journey: Journey, now: datetime
) -> list[dict[str, Any]]:
    """For each leaf of each decision tree: the one MongoDB query that selects its users among
    all stored users (as the ClassDojo write-up's generated WHERE per leaf), in MongoDB Extended
    JSON so it pastes into mongosh, and how many users it selects now."""
    return [
        {
            "decision": leaf.root,
            "leaf": leaf.leaf,
            "condition": leaf.condition.describe(),
            "query": json_util.dumps(leaf.query) if leaf.query is not None else None,
            "users": await users.count_matching(leaf.query) if leaf.query is not None else None,
        }
        for leaf in leaf_audiences(journey, now)
    ]
