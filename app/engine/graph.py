"""A journey's flow, for people: Mermaid text, and a self-contained HTML page (inline SVG, no
script, nothing fetched) that draws every step, optionally with figures per step."""

from __future__ import annotations

import html
from collections.abc import Mapping

from app.engine.definitions import (
    NO_ACTION,
    BranchStep,
    DelayStep,
    ExitStep,
    Journey,
    MessageStep,
    PathsStep,
    SplitStep,
    Step,
    WaitForStep,
    successors,
)
from app.engine.durations import format_duration

NODE_WIDTH, NODE_HEIGHT, GAP_X, GAP_Y = 220, 64, 40, 70


def describe(step: Step) -> str:
    match step:
        case MessageStep():
            return f"{step.channel}: {step.template}"
        case DelayStep():
            if step.duration is not None:
                return f"wait {format_duration(step.duration)}"
            if step.until_time is not None:
                return f"wait until {step.until_time:%H:%M} local"
            return f"wait until {step.until_attribute}"
        case BranchStep():
            return f"if {step.condition.describe()}"
        case WaitForStep():
            return f"wait for {step.event} up to {format_duration(step.timeout)}"
        case PathsStep():
            return "first eligible of " + ", ".join(p.id for p in step.paths)
        case SplitStep():
            return "split " + " / ".join(f"{b.percent:g}%" for b in step.branches)
        case ExitStep():
            return "exit"
    raise TypeError(f"not a step: {step!r}")


def mermaid(journey: Journey) -> str:
    def label(text: str) -> str:
        return text.replace('"', "'")

    lines = ["flowchart TD", f'  entry(["{label(_entry_text(journey))}"]) --> {journey.start}']
    for step_id, step in journey.steps.items():
        shape = ('{"', '"}') if isinstance(step, BranchStep) else ('["', '"]')
        lines.append(f"  {step_id}{shape[0]}{step_id}: {label(describe(step))}{shape[1]}")
        for edge, target in successors(step):
            arrow = f"-- {label(edge)} -->" if edge else "-->"
            lines.append(f"  {step_id} {arrow} {target}")
    if any(
        target == NO_ACTION for step in journey.steps.values() for _, target in successors(step)
    ):
        lines.append(f'  {NO_ACTION}(["no action"])')
    return "\n".join(lines) + "\n"


def _entry_text(journey: Journey) -> str:
    entry = journey.entry
    for attribute, text in (
        ("event", "on {}"),
        ("attribute", "when {} changes"),
        ("cron", "at {}"),
    ):
        if hasattr(entry, attribute):
            return "entry " + text.format(getattr(entry, attribute))
    return "entry"


def _layers(journey: Journey) -> dict[str, int]:
    """Depth of each node: its longest distance from the start (the graph has no cycles)."""
    depth = {journey.start: 0}
    order = [journey.start]
    for step_id in order:
        step = journey.steps.get(step_id)
        for _, target in successors(step) if step else []:
            if depth.get(target, -1) < depth[step_id] + 1:
                depth[target] = depth[step_id] + 1
                order.append(target)
    for step_id in journey.steps:
        depth.setdefault(step_id, 0)
    return depth


def html_page(journey: Journey, figures: Mapping[str, Mapping[str, int]] | None = None) -> str:
    """The whole flow on one page; `figures` (step id -> name -> count) are drawn on the steps."""
    depth = _layers(journey)
    rows: dict[int, list[str]] = {}
    for node in depth:
        rows.setdefault(depth[node], []).append(node)
    width = max(len(r) for r in rows.values()) * (NODE_WIDTH + GAP_X) + GAP_X
    height = (max(rows) + 1) * (NODE_HEIGHT + GAP_Y) + GAP_Y
    position = {}
    for level, nodes in rows.items():
        offset = (width - len(nodes) * (NODE_WIDTH + GAP_X) + GAP_X) / 2
        for i, node in enumerate(nodes):
            position[node] = (
                offset + i * (NODE_WIDTH + GAP_X),
                GAP_Y + level * (NODE_HEIGHT + GAP_Y),
            )
    parts = []
    for step_id, step in journey.steps.items():
        x1, y1 = position[step_id]
        for edge, target in successors(step):
            x2, y2 = position[target]
            sx, sy, tx, ty = x1 + NODE_WIDTH / 2, y1 + NODE_HEIGHT, x2 + NODE_WIDTH / 2, y2
            parts.append(
                f'<line x1="{sx}" y1="{sy}" x2="{tx}" y2="{ty}" class="edge" '
                'marker-end="url(#arrow)"/>'
            )
            if edge:
                parts.append(
                    f'<text x="{(sx + tx) / 2 + 4}" y="{(sy + ty) / 2}" class="edge-label">'
                    f"{html.escape(edge)}</text>"
                )
    for node, (x, y) in position.items():
        step = journey.steps.get(node)
        kind = type(step).__name__.removesuffix("Step").lower() if step else "end"
        text = describe(step) if step else "no action"
        counts = figures.get(node, {}) if figures else {}
        figure_text = "  ".join(f"{name} {count}" for name, count in counts.items())
        parts.append(
            f'<g class="node {kind}" data-step="{html.escape(node)}">'
            f'<rect x="{x}" y="{y}" width="{NODE_WIDTH}" height="{NODE_HEIGHT}" rx="8"/>'
            f'<text x="{x + 10}" y="{y + 20}" class="title">{html.escape(node)}</text>'
            f'<text x="{x + 10}" y="{y + 38}">{html.escape(text[:34])}</text>'
            f'<text x="{x + 10}" y="{y + 55}" class="figures">{html.escape(figure_text)}</text>'
            "</g>"
        )
    title = html.escape(f"{journey.name} (version {journey.version})")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #1d2433; }}
.node rect {{ fill: #f4f6fb; stroke: #4b5b8c; stroke-width: 1.5; }}
.node.message rect {{ fill: #e5f4ea; stroke: #2f7d4a; }}
.node.branch rect, .node.paths rect, .node.split rect {{ fill: #fff4df; stroke: #b7791f; }}
.node.exit rect, .node.end rect {{ fill: #f1f1f1; stroke: #888; }}
.node text {{ font-size: 12px; }}
.node .title {{ font-weight: 600; }}
.node .figures {{ fill: #24408e; font-weight: 600; }}
.edge {{ stroke: #7a869a; stroke-width: 1.5; }}
.edge-label {{ font-size: 11px; fill: #4a5568; }}
</style></head><body>
<h1>{title}</h1>
<p>{html.escape(_entry_text(journey))}</p>
<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">
<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7"
orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#7a869a"/></marker></defs>
{chr(10).join(parts)}
</svg></body></html>
"""
