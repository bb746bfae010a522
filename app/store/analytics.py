"""What happened, read back from the `timeline` (every emitted effect) and `deliveries` (what
became of each send): a user's timeline and the per-step figures of a journey's flow."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from app.store.mongo import Database

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
    entries = await db["timeline"].find({"user_id": user_id}).to_list(None)
    outcomes = {d["_id"]: d async for d in db["deliveries"].find({"user_id": user_id})}
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
    db: Database, journey_id: str, version: int, start: str
) -> dict[str, dict[str, int]]:
    """entered, waiting now, sent, converted, exited, suppressed and completed, per step."""
    figures: dict[str, Counter[str]] = defaultdict(Counter)
    cursor = db["timeline"].find(
        {"journey_id": journey_id, "journey_version": version},
        {"kind": 1, "event": 1, "step_id": 1},
    )
    async for entry in cursor:
        kind = entry["event"] if entry["kind"] == "analytics" else entry["kind"]
        if kind in FIGURES:
            figures[entry.get("step_id") or start][FIGURES[kind]] += 1
    async for user in db["users"].find({"timers.journey_id": journey_id}, {"timers": 1}):
        for step_id in {t["step_id"] for t in user["timers"] if t["journey_id"] == journey_id}:
            figures[step_id]["waiting"] += 1
    return {step: dict(counts) for step, counts in figures.items()}
