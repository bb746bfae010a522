"""The ClassDojo DecisionTree: nested branch steps form a binary tree, and each leaf (a step that
is not a branch, or no_action) is reached by the OR of its root-to-leaf paths, each the AND of
the conditions along it. So "which users sit at leaf X now" is one query."""

from __future__ import annotations

from app.engine.conditions import All, Any_, Condition, Not
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
