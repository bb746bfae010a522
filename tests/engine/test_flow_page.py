"""The flow page for the person who reads it: counts inside their boxes, full step text (wrapped,
or cut with an ellipsis and the whole text on hover), edges with counts and shares, each
message's funnel, and controls that need no script."""

from __future__ import annotations

import re
from pathlib import Path

from app.authoring.files import load_journey
from app.engine.graph import FlowView, edge_counts, html_page

ACTIVATION = load_journey(
    Path(__file__).resolve().parents[2] / "examples/classdojo-activation.yaml"
)


def box(page: str, step: str) -> str:
    return re.search(rf'<g class="node [a-z]+" data-step="{step}">(.*?)</g>', page).group(1)


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
        versions=((1, "archived"), (2, "published")),
        since="2026-11-01",
        variants=("split=a", "split=b"),
        variant="split=b",
    )

    page = html_page(ACTIVATION, view=view)

    assert '<a href="?version=2">version 2 (published)</a>' in page
    assert '<a class="current" href="?version=1">' in page
    assert '<input type="date" name="since" value="2026-11-01">' in page
    assert '<option value="split=b" selected>split=b</option>' in page
    assert "<script" not in page


def test_edge_counts_come_from_the_figures_the_store_keeps() -> None:
    figures = {
        "has_class": {"decided:yes": 3, "decided:no": 9},
        "add_class": {"sent": 9},
    }

    assert edge_counts(ACTIVATION, figures) == {"has_class": {"yes": 3, "no": 9}}
