"""The ClassDojo DecisionTree: nested branch steps form a binary tree, and each leaf (a step that
is not a branch, or no_action) is reached by the OR of its root-to-leaf paths, each the AND of
the conditions along it. So "which users sit at leaf X now" is one query."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from app.engine.conditions import All, Any_, Condition, MongoFilter, Not
from app.engine.definitions import BranchStep, Journey


def leaf_conditions(journey: Journey, root: str) -> dict[str, Condition]:
    paths: dict[str, list[Condition]] = {}
    pending: list[tuple[str, tuple[Condition, ...]]] = [(root, ())]
    while pending:
        step_id, path = pending.pop()
        step = journey.steps.get(step_id)
        if not isinstance(step, BranchStep):
            paths.setdefault(step_id, []).append(All(path))
            continue
        pending.append((step.yes, (*path, step.condition)))
        pending.append((step.no, (*path, Not(step.condition))))
    return {leaf: Any_(tuple(options)) for leaf, options in paths.items()}


def decision_roots(journey: Journey) -> list[str]:
    """The branch steps no other branch step leads to, in the journey's step order: each is the
    root of one decision tree (a journey can ask the same question again later, as the
    activation journey does each day)."""
    branches = {s: step for s, step in journey.steps.items() if isinstance(step, BranchStep)}
    inner = {target for step in branches.values() for target in (step.yes, step.no)}
    return [step_id for step_id in branches if step_id not in inner]


@dataclass(frozen=True)
class LeafAudience:
    """The users a leaf of one decision tree selects now: the journey's audience AND the OR of
    the leaf's paths. `query` is None when a condition on the way is about the entry itself
    (`since_entry`): outside an entry it has no answer, so no query selects those users."""

    root: str
    leaf: str
    condition: Condition
    query: MongoFilter | None


def leaf_audiences(journey: Journey, now: datetime) -> list[LeafAudience]:
    """Every leaf of every decision tree of the journey, roots in step order, leaves by name."""
    audiences = []
    for root in decision_roots(journey):
        for leaf, reached in sorted(leaf_conditions(journey, root).items()):
            condition = All((journey.audience, reached)) if journey.audience else reached
            query = None if condition.needs_entry else condition.mongo(now)
            audiences.append(LeafAudience(root, leaf, condition, query))
    return audiences
