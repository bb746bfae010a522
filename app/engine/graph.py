"""A journey's flow, for people: Mermaid text, and a self-contained HTML page (inline SVG, no
script, nothing fetched) that draws every step, optionally with figures per step."""

from __future__ import annotations

import html
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass

from app.engine.conversions import Comparison, Rate, conversions_from_counts
from app.engine.definitions import (
    NO_ACTION,
    BranchStep,
    DelayStep,
    ExitStep,
    Journey,
    MessageStep,
    PathsStep,
    SplitBranch,
    SplitStep,
    Step,
    WaitForStep,
    successors,
)
from app.engine.durations import format_duration

NODE_WIDTH, GAP_X, GAP_Y, LINE_HEIGHT = 240, 40, 70, 16


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


def _out(journey: Journey, step_id: str) -> list[tuple[str, str]]:
    """(label, node) for each edge out of a step on the page: an edge to no_action ends at a
    "no action" box of its own, below its step, rather than at one box shared by the whole
    journey that every such edge would have to cross the page to reach."""
    step = journey.steps.get(step_id)
    return [
        (label, f"{NO_ACTION}:{step_id}" if target == NO_ACTION else target)
        for label, target in (successors(step) if step else [])
    ]


def _layers(journey: Journey) -> dict[str, int]:
    """Depth of each node: its longest distance from the start (the graph has no cycles)."""
    depth = {journey.start: 0}
    order = [journey.start]
    for step_id in order:
        for _, target in _out(journey, step_id):
            if depth.get(target, -1) < depth[step_id] + 1:
                depth[target] = depth[step_id] + 1
                order.append(target)
    for step_id in journey.steps:
        depth.setdefault(step_id, 0)
    return depth


def split_variants(journey: Journey) -> tuple[str, ...]:
    """Every split branch as `split=branch`, in step order then branch order: the variants the
    flow page can be narrowed to."""
    return tuple(
        f"{step.id}={branch.id}"
        for step in journey.steps.values()
        if isinstance(step, SplitStep)
        for branch in step.branches
    )


def _split_branch(journey: Journey, variant: str) -> tuple[SplitStep, SplitBranch]:
    """The split step and the branch a `split=branch` variant names."""
    split_id, _, branch_id = variant.partition("=")
    split = journey.steps.get(split_id)
    if isinstance(split, SplitStep):
        for branch in split.branches:
            if branch.id == branch_id:
                return split, branch
    raise ValueError(f"no variant '{variant}': expected one of {list(split_variants(journey))}")


def _reachable(
    journey: Journey, start: str | None, without: tuple[str, str] = ("", "")
) -> set[str]:
    """The steps reached from `start` following successors, never taking the edge `without`
    (step id, edge key)."""
    seen: set[str] = set()
    todo = [start] if start else []
    while todo:
        step_id = todo.pop()
        step = journey.steps.get(step_id)
        if step is None or step_id in seen:
            continue
        seen.add(step_id)
        todo += [
            target
            for label, target in successors(step)
            if (step_id, edge_key(step, label)) != without
        ]
    return seen


def variant_steps(journey: Journey, variant: str) -> set[str]:
    """The steps a `split=branch` variant's entries can reach after the split: its branch's
    subtree, merged steps included (see `shared_steps`)."""
    return _reachable(journey, _split_branch(journey, variant)[1].next)


def shared_steps(journey: Journey, variant: str) -> set[str]:
    """Of a variant's steps, those also reached from the start without its branch: their counts
    hold every variant's entries, not only this one's."""
    split, branch = _split_branch(journey, variant)
    others = _reachable(journey, journey.start, (split.id, branch.id))
    return variant_steps(journey, variant) & others


@dataclass(frozen=True)
class FlowView:
    """What the flow page is showing, for its controls: the journey's versions (version,
    status), the date range (ISO dates, empty for open), and the split variants it can be
    narrowed to (`split=branch`) with the chosen one."""

    versions: tuple[tuple[int, str], ...] = ()
    since: str = ""
    until: str = ""
    variants: tuple[str, ...] = ()
    variant: str = ""


# Figures shown on a message step as its funnel, in order, each with its rate of the first.
FUNNEL = ("sent", "delivered", "opened", "clicked")
LINE_CHARS = 30  # characters per line of text in a box, at 12px in a NODE_WIDTH box
MAX_TEXT_LINES = 3


def edge_key(step: Step, label: str) -> str:
    """The key of an edge's count: its label, or a split branch's id without its percentage."""
    return label.split(" ")[0] if isinstance(step, SplitStep) else label


def edge_counts(
    journey: Journey, figures: Mapping[str, Mapping[str, int]]
) -> dict[str, dict[str, int]]:
    """Each edge's count from the step figures (app/engine/figures.py names them): a decision's
    yes and no, a wait's performed and timed out, each path's wins, each split branch's
    entries. Edges out of delays and messages carry no count of their own."""
    edges: dict[str, dict[str, int]] = {}
    for step_id, step in journey.steps.items():
        counts = figures.get(step_id, {})
        names = {
            edge_key(step, label): _edge_figure(step, edge_key(step, label))
            for label, _ in successors(step)
        }
        found = {key: counts[name] for key, name in names.items() if name and name in counts}
        if found:
            edges[step_id] = found
    return edges


def _edge_figure(step: Step, key: str) -> str | None:
    match step:
        case BranchStep():
            return f"decided:{key}"
        case WaitForStep():
            return key  # "performed", "timed out"
        case PathsStep():
            return f"won:{key}"
        case SplitStep():
            return f"variant:{key}"
    return None


def _wrap(text: str, lines: int = MAX_TEXT_LINES) -> list[str]:
    """Word-wrapped to LINE_CHARS, at most `lines` lines, the last ending in an ellipsis when
    the text is longer (the full text is the box's tooltip)."""
    wrapped = textwrap.wrap(text, LINE_CHARS, break_long_words=True) or [""]
    if len(wrapped) > lines:
        wrapped = wrapped[:lines]
        wrapped[-1] = wrapped[-1][: LINE_CHARS - 1].rstrip() + "\u2026"
    return wrapped


def _figure_lines(step: Step | None, counts: Mapping[str, int]) -> list[str]:
    """A message step's funnel first (sent 16 -> delivered 15 (94%) ...), then the other
    figures, wrapped to the box."""
    shown = dict(counts)
    lines = []
    if isinstance(step, MessageStep) and any(name in shown for name in FUNNEL):
        first = shown.get("sent", 0)
        parts = []
        for name in FUNNEL:
            count = shown.pop(name, 0)
            rate = f" ({count / first:.0%})" if first and name != "sent" else ""
            parts.append(f"{name} {count}{rate}")
        lines += textwrap.wrap(" \u2192 ".join(parts), LINE_CHARS)
    rest = " \u00b7 ".join(f"{name} {count}" for name, count in shown.items())
    return lines + (textwrap.wrap(rest, LINE_CHARS) if rest else [])


def html_page(
    journey: Journey,
    figures: Mapping[str, Mapping[str, int]] | None = None,
    edges: Mapping[str, Mapping[str, int]] | None = None,
    view: FlowView | None = None,
) -> str:
    """The whole flow on one page. `figures` (step id -> name -> count) are drawn inside their
    steps' boxes, which grow to hold them; `edges` (step id -> edge key -> count) label each edge
    with its count and its share of the step's edges; `view` adds the controls (date range,
    version, variant): plain forms and links, so the page needs no script. With a variant chosen,
    the steps its entries cannot reach are dimmed and its conversions are summed up above (a
    variant the journey does not have is a ValueError: callers check `split_variants`)."""
    figures, edges = figures or {}, edges or {}
    variant = view.variant if view else ""
    reached = variant_steps(journey, variant) if variant else set()
    shared = shared_steps(journey, variant) if variant else set()
    in_view = reached | {target for step_id in reached for _, target in _out(journey, step_id)}
    split_id, _, branch_id = variant.partition("=")
    depth = _layers(journey)
    rows: dict[int, list[str]] = {}
    for node in depth:
        rows.setdefault(depth[node], []).append(node)
    boxes = {}
    for node in depth:
        step = journey.steps.get(node)
        text = describe(step) if step else "no action"
        notes = ["all variants"] if node in shared else []
        boxes[node] = (text, _wrap(text), _figure_lines(step, figures.get(node, {})), notes)
    heights = {
        node: 30 + LINE_HEIGHT * (len(text_lines) + len(figure_lines) + len(notes)) + 8
        for node, (_, text_lines, figure_lines, notes) in boxes.items()
    }
    row_height = {level: max(heights[n] for n in nodes) for level, nodes in rows.items()}
    width = max(len(r) for r in rows.values()) * (NODE_WIDTH + GAP_X) + GAP_X
    tops, y = {}, float(GAP_Y)
    for level in sorted(rows):
        tops[level] = y
        y += row_height[level] + GAP_Y
    height = y
    position = {}
    for level, nodes in rows.items():
        offset = (width - len(nodes) * (NODE_WIDTH + GAP_X) + GAP_X) / 2
        for i, node in enumerate(nodes):
            position[node] = (offset + i * (NODE_WIDTH + GAP_X), tops[level])
    parts = []
    for step_id, step in journey.steps.items():
        x1, y1 = position[step_id]
        out = _out(journey, step_id)
        counts = edges.get(step_id, {})
        total = sum(counts.get(edge_key(step, label), 0) for label, _ in out)
        for label, target in out:
            x2, y2 = position[target]
            sx, sy = x1 + NODE_WIDTH / 2, y1 + heights[step_id]
            tx, ty = x2 + NODE_WIDTH / 2, y2
            key = edge_key(step, label)
            outside = variant and step_id not in reached and (step_id, key) != (split_id, branch_id)
            dimmed = " dimmed" if outside else ""
            parts.append(
                f'<line x1="{sx}" y1="{sy}" x2="{tx}" y2="{ty}" class="edge{dimmed}" '
                'marker-end="url(#arrow)"/>'
            )
            text = label
            if key in counts:
                count = counts[key]
                text += f" \u00b7 {count}" + (f" ({count / total:.0%})" if total else "")
            if text:
                parts.append(
                    f'<text x="{(sx + tx) / 2 + 4}" y="{(sy + ty) / 2}" class="edge-label{dimmed}" '
                    f'data-edge="{html.escape(step_id)}:{html.escape(key)}">'
                    f"{html.escape(text)}</text>"
                )
    for node, (x, y) in position.items():
        step = journey.steps.get(node)
        kind = type(step).__name__.removesuffix("Step").lower() if step else "end"
        full, text_lines, figure_lines, notes = boxes[node]
        name = node if step else "end"
        lines = [f'<text x="{x + 10}" y="{y + 20}" class="title">{html.escape(name)}</text>']
        line_y = y + 20
        for line in text_lines:
            line_y += LINE_HEIGHT
            lines.append(f'<text x="{x + 10}" y="{line_y}">{html.escape(line)}</text>')
        for line in figure_lines:
            line_y += LINE_HEIGHT
            lines.append(
                f'<text x="{x + 10}" y="{line_y}" class="figures">{html.escape(line)}</text>'
            )
        for line in notes:
            line_y += LINE_HEIGHT
            lines.append(f'<text x="{x + 10}" y="{line_y}" class="note">{line}</text>')
        dimmed = " dimmed" if variant and node not in in_view else ""
        parts.append(
            f'<g class="node {kind}{dimmed}" data-step="{html.escape(node)}">'
            f"<title>{html.escape(name)}: {html.escape(full)}</title>"
            f'<rect x="{x}" y="{y}" width="{NODE_WIDTH}" height="{heights[node]}" rx="8"/>'
            + "".join(lines)
            + "</g>"
        )
    title = html.escape(f"{journey.name} (version {journey.version})")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #1d2433; }}
form.controls {{ display: flex; gap: 16px; align-items: end; flex-wrap: wrap; margin: 8px 0; }}
form.controls label {{ display: flex; flex-direction: column; font-size: 13px; }}
nav.versions a {{ margin-right: 12px; }}
nav.versions a.current {{ font-weight: 700; text-decoration: none; color: inherit; }}
.node rect {{ fill: #f4f6fb; stroke: #4b5b8c; stroke-width: 1.5; }}
.node.message rect {{ fill: #e5f4ea; stroke: #2f7d4a; }}
.node.branch rect, .node.paths rect, .node.split rect {{ fill: #fff4df; stroke: #b7791f; }}
.node.exit rect, .node.end rect {{ fill: #f1f1f1; stroke: #888; }}
.node text {{ font-size: 12px; }}
.node .title {{ font-weight: 600; }}
.node .figures {{ fill: #24408e; font-weight: 600; }}
.edge {{ stroke: #7a869a; stroke-width: 1.5; }}
.edge-label {{ font-size: 11px; fill: #4a5568; }}
.dimmed {{ opacity: .35; }}
.node .note {{ font-style: italic; fill: #8a5a00; }}
section.variant {{ border-left: 4px solid #b7791f; padding: 4px 12px; margin: 8px 0; }}
table.figures {{ border-collapse: collapse; margin-top: 16px; font-size: 13px; }}
table.figures td, table.figures th {{ border: 1px solid #d0d5e0; padding: 2px 8px; }}
</style></head><body>
<h1>{title}</h1>
<p>{html.escape(_entry_text(journey))}</p>
{_controls(journey, view) if view else ""}
{_variant_summary(journey, figures, variant) if variant else ""}
<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">
<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7"
orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#7a869a"/></marker></defs>
{chr(10).join(parts)}
</svg>
{_figures_table(figures)}
</body></html>
"""


def _controls(journey: Journey, view: FlowView) -> str:
    """The version switcher (links) and a GET form for the date range and the variant."""
    links = " ".join(
        f'<a class="current" href="?version={v}">version {v} ({html.escape(status)})</a>'
        if v == journey.version
        else f'<a href="?version={v}">version {v} ({html.escape(status)})</a>'
        for v, status in view.versions
    )
    options = '<option value="">all entries</option>' + "".join(
        f'<option value="{html.escape(v)}"{" selected" if v == view.variant else ""}>'
        f"{html.escape(v)}</option>"
        for v in view.variants
    )
    variant = (
        f'<label>variant<select name="variant">{options}</select></label>' if view.variants else ""
    )
    return f"""<nav class="versions">{links}</nav>
<form class="controls" method="get">
<input type="hidden" name="version" value="{journey.version}">
<label>from<input type="date" name="since" value="{html.escape(view.since)}"></label>
<label>to<input type="date" name="until" value="{html.escape(view.until)}"></label>
{variant}<button type="submit">show</button>
</form>"""


def _variant_summary(
    journey: Journey, figures: Mapping[str, Mapping[str, int]], variant: str
) -> str:
    """The chosen variant's entries and conversions with their 95% interval, and how it compares
    with its split's first branch, counted as `/journeys/{id}/conversions` counts them."""
    split, branch = _split_branch(journey, variant)
    first = split.branches[0]
    counted = conversions_from_counts({journey.version: figures})[journey.version]
    rates = counted.variants.get(split.id, {})
    rate = rates.get(branch.id, Rate())
    interval = rate.interval()
    said = f"{variant}: {rate.entered} entries, {rate.converted} conversions"
    if interval:
        said += f" ({rate.share:.1%}, 95% interval {interval[0]:.1%} to {interval[1]:.1%})"
    if branch == first:
        compared = (
            f"{variant} is the first branch of its split, the one the others are compared with"
        )
    else:
        baseline = f"{split.id}={first.id}"
        compared = Comparison(variant, baseline, rate, rates.get(first.id, Rate())).text()
    return (
        f'<section class="variant" data-variant="{html.escape(variant)}">'
        f'<p class="rate">{html.escape(said)}</p><p class="comparison">{html.escape(compared)}</p>'
        "<p>Dimmed steps are not reached by this variant; steps marked all variants are reached "
        "by others too, and their counts are those of every variant.</p></section>"
    )


def _figures_table(figures: Mapping[str, Mapping[str, int]]) -> str:
    """Every figure of the picture again as a table: readable by screen readers and scripts."""
    if not figures:
        return ""
    rows = "".join(
        f'<tr data-step="{html.escape(step)}" data-figure="{html.escape(name)}">'
        f"<td>{html.escape(step)}</td><td>{html.escape(name)}</td><td>{count}</td></tr>"
        for step, counts in figures.items()
        for name, count in counts.items()
    )
    return (
        '<table class="figures"><thead><tr><th>step</th><th>figure</th><th>count</th></tr>'
        f"</thead><tbody>{rows}</tbody></table>"
    )
