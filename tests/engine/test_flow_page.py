"""The flow page for the person who reads it: counts inside their boxes, full step text (wrapped,
or cut with an ellipsis and the whole text on hover), edges with counts and shares, each
message's funnel, and controls that need no script."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.authoring.files import load_journey
from app.engine import load_journey_text
from app.engine.graph import (
    FlowView,
    edge_counts,
    html_page,
    shared_steps,
    split_variants,
    variant_steps,
)

ACTIVATION = load_journey(
    Path(__file__).resolve().parents[2] / "examples/classdojo-activation.yaml"
)
# Two splits: `offer`'s a and b lead their own ways to one reminder, c ends at once; `tone`
# (inside b) sends both its variants to the same step.
SPLITS = load_journey_text("""
id: splits
version: 3
entry: {event: signed_up}
steps:
  hello: {type: message, channel: email, template: hello, next: offer}
  offer: {type: split, branches: [{id: a, percent: 40, next: discount},
    {id: b, percent: 40, next: tone}, {id: c, percent: 20}]}
  discount: {type: message, channel: email, template: discount, next: reminder}
  tone: {type: split, branches: [{id: warm, percent: 50, next: story},
    {id: plain, percent: 50, next: story}]}
  story: {type: message, channel: email, template: story, next: reminder}
  reminder: {type: message, channel: push, template: reminder}
""")


def box(page: str, step: str) -> str:
    return re.search(rf'<g class="node [a-z ]+" data-step="{step}">(.*?)</g>', page).group(1)


def test_counts_sit_inside_their_box_which_grows_to_hold_them() -> None:
    plain = html_page(ACTIVATION)
    page = html_page(ACTIVATION, {"welcome": {"entered": 17, "converted": 2, "completed": 17}})

    height = lambda p: float(re.search(r'height="([\d.]+)"', box(p, "welcome")).group(1))  # noqa: E731
    assert height(page) > height(plain)
    figures = re.findall(r'class="figures">([^<]*)<', box(page, "welcome"))
    assert " ".join(figures) == "entered 17 · converted 2 · completed 17"
    assert all(len(line) <= 30 for line in figures)


def test_a_message_shows_its_funnel_with_rates() -> None:
    figures = {"add_class": {"sent": 16, "delivered": 15, "opened": 6, "clicked": 2, "failed": 1}}

    lines = re.findall(
        r'class="figures">([^<]*)<', box(html_page(ACTIVATION, figures), "add_class")
    )

    assert " ".join(lines) == (
        "sent 16 → delivered 15 (94%) → opened 6 (38%) → clicked 2 (12%) failed 1"
    )


def test_long_step_text_wraps_and_ends_in_an_ellipsis_with_the_whole_text_on_hover() -> None:
    has_class = box(html_page(ACTIVATION), "has_class")

    lines = re.findall(r'<text x="[\d.]+" y="[\d.]+">([^<]*)<', has_class)
    assert len(lines) == 3 and lines[-1].endswith("…")
    assert (
        "<title>has_class: if (events.added_class.count $gte 1 and "
        "events.added_student.count $gte 1)</title>" in has_class
    )


def test_edges_carry_their_counts_and_share_and_no_action_ends_below_its_step() -> None:
    page = html_page(ACTIVATION, edges={"has_class": {"yes": 5, "no": 15}})

    labels = dict(re.findall(r'data-edge="([^"]+)">([^<]*)<', page))
    assert labels["has_class:yes"] == "yes · 5 (25%)"
    assert labels["has_class:no"] == "no · 15 (75%)"
    assert labels["check_1:yes"] == "yes"
    assert page.count('data-step="no_action:') == 4  # one end box per decision


def test_the_controls_are_links_and_a_get_form() -> None:
    view = FlowView(
        versions=((2, "archived"), (3, "published")),
        since="2026-11-01",
        variants=split_variants(SPLITS),
        variant="offer=b",
    )

    page = html_page(SPLITS, view=view)

    assert '<a href="?version=2">version 2 (archived)</a>' in page
    assert '<a class="current" href="?version=3">' in page
    assert '<input type="date" name="since" value="2026-11-01">' in page
    assert '<option value="offer=b" selected>offer=b</option>' in page
    assert '<option value="offer=a">offer=a</option>' in page
    assert "<script" not in page


def test_edge_counts_come_from_the_figures_the_store_keeps() -> None:
    figures = {
        "has_class": {"decided:yes": 3, "decided:no": 9},
        "add_class": {"sent": 9},
    }

    assert edge_counts(ACTIVATION, figures) == {"has_class": {"yes": 3, "no": 9}}


def test_the_variants_are_each_split_branch_in_step_then_branch_order() -> None:
    assert split_variants(SPLITS) == (
        "offer=a",
        "offer=b",
        "offer=c",
        "tone=warm",
        "tone=plain",
    )
    assert split_variants(ACTIVATION) == ()


def test_a_variant_reaches_its_branch_subtree_and_merged_steps_are_shared() -> None:
    assert variant_steps(SPLITS, "offer=a") == {"discount", "reminder"}
    assert shared_steps(SPLITS, "offer=a") == {"reminder"}  # offer=b reaches it too
    assert variant_steps(SPLITS, "offer=b") == {"tone", "story", "reminder"}
    assert shared_steps(SPLITS, "offer=b") == {"reminder"}
    assert variant_steps(SPLITS, "offer=c") == set()
    assert variant_steps(SPLITS, "tone=warm") == {"story", "reminder"}
    assert shared_steps(SPLITS, "tone=warm") == {"story", "reminder"}  # tone=plain goes there
    with pytest.raises(ValueError, match="no variant 'offer=z'"):
        variant_steps(SPLITS, "offer=z")


def node_classes(page: str) -> dict[str, str]:
    found = re.findall(r'<g class="([^"]+)" data-step="([^"]+)"', page)
    return {step: classes for classes, step in found}


def test_a_chosen_variant_dims_the_rest_and_marks_the_steps_all_variants_share() -> None:
    figures = {
        "hello": {"entered": 200, "converted": 30},
        "offer": {
            "variant:a": 80,
            "variant:a:converted": 8,
            "variant:b": 80,
            "variant:b:converted": 20,
            "variant:c": 40,
            "variant:c:converted": 2,
        },
    }

    page = html_page(
        SPLITS, figures, view=FlowView(variants=split_variants(SPLITS), variant="offer=b")
    )

    classes = node_classes(page)
    assert {step for step, c in classes.items() if "dimmed" in c} == {"hello", "offer", "discount"}
    assert "all variants" in box(page, "reminder")
    assert "all variants" not in box(page, "story")
    assert 'class="edge-label" data-edge="offer:b"' in page  # the branch taken stays bright
    assert 'class="edge-label dimmed" data-edge="offer:a"' in page
    summary = re.search(r'<section class="variant" data-variant="offer=b">(.*?)</section>', page)
    rate, comparison = re.findall(r'<p class="(?:rate|comparison)">([^<]*)</p>', summary.group(1))
    assert rate == "offer=b: 80 entries, 20 conversions (25.0%, 95% interval 16.8% to 35.5%)"
    assert comparison.startswith("offer=b converts 25.0% vs 10.0% for offer=a, lift +150%, p = ")
    assert comparison.endswith("(significant at 5%)")


def test_the_first_branch_is_the_baseline_and_without_a_variant_nothing_is_dimmed() -> None:
    view = FlowView(variants=split_variants(SPLITS), variant="offer=a")

    page = html_page(SPLITS, view=view)

    assert "offer=a: 0 entries, 0 conversions</p>" in page
    assert "offer=a is the first branch of its split" in page
    plain = html_page(SPLITS, view=FlowView(variants=split_variants(SPLITS)))
    assert "dimmed" not in plain.split("</style>")[1] and "all variants" not in plain
    assert '<section class="variant"' not in plain
