"""What happened, read back from the `timeline` (every emitted effect) and `deliveries` (what
became of each send): a user's timeline and the per-step figures of a journey's flow."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

from bson import json_util

from app.engine.conversions import conversion_figures
from app.engine.decision_tree import leaf_audiences
from app.engine.definitions import Journey
from app.store.deliveries import Deliveries
from app.store.mongo import Database
from app.store.timeline import Timeline
from app.store.users import UserStore

FIGURES = {
    "entered": "entered",
    "send": "sent",
    "converted": "converted",
    "exited": "exited",
    "suppressed": "suppressed",
    "completed": "completed",
}


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
    db: Database, users: UserStore, journey_id: str, version: int, start: str
) -> dict[str, dict[str, int]]:
    """entered, waiting now, sent, converted, exited, suppressed and completed, per step."""
    figures: dict[str, Counter[str]] = defaultdict(Counter)
    async for entry in Timeline(db).of_journey(journey_id, version):
        kind = entry["event"] if entry["kind"] == "analytics" else entry["kind"]
        if kind in FIGURES:
            figures[entry.get("step_id") or start][FIGURES[kind]] += 1
    async for steps in users.steps_waiting(journey_id):
        for step_id in steps:
            figures[step_id]["waiting"] += 1
    return {step: dict(counts) for step, counts in figures.items()}


async def conversions(db: Database, journey_id: str) -> dict[str, Any]:
    """Entries and conversions per version of a journey: all, messaged, holdout, and per split
    variant (see `app.engine.conversions`)."""
    records = [entry async for entry in Timeline(db).analytics_of(journey_id)]
    return {
        str(version): figures.to_json()
        for version, figures in sorted(conversion_figures(records).items())
    }


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
