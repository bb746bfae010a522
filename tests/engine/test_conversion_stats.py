"""Conversion you can trust: a Wilson interval on each rate, and lift with a two-proportion
z-test in plain words, checked against values computed by hand (and by statsmodels'
`proportions_ztest`, which gives z = 0.957, p = 0.3385 for the first case)."""

from __future__ import annotations

import pytest

from app.engine import load_journey_text
from app.engine.conversions import Comparison, Rate, VersionFigures, first_branches

SPLIT_JOURNEY = (
    "id: j\nversion: 1\nentry: {event: signed_up}\nsteps:\n"
    "  offer:\n    type: split\n    branches:\n"
    "      - {id: control, percent: 34, next: hello}\n"
    "      - {id: b, percent: 33, next: hello}\n"
    "      - {id: d, percent: 33, next: hello}\n"
    "  hello: {type: message, channel: email, template: hello}\n"
)


def test_the_wilson_interval_of_a_rate() -> None:
    low, high = Rate(1000, 24).interval() or (0, 0)
    assert (round(low, 4), round(high, 4)) == (0.0162, 0.0355)
    assert Rate(10, 0).interval() == (0.0, pytest.approx(0.2775, abs=1e-4))
    assert Rate().interval() is None


def test_a_small_lift_on_small_numbers_is_not_significant() -> None:
    comparison = Comparison("B", "A", Rate(1000, 31), Rate(1000, 24))

    assert comparison.p_value() == pytest.approx(0.3385, abs=1e-4)
    assert comparison.text() == (
        "B converts 3.1% vs 2.4% for A, lift +29%, p = 0.34 (not significant at 5%)"
    )


def test_the_same_lift_on_large_numbers_is() -> None:
    comparison = Comparison("B", "A", Rate(20000, 620), Rate(20000, 480))

    # pooled 0.0275, standard error 0.001635, z = 0.007 / 0.001635 = 4.28
    assert comparison.p_value() == pytest.approx(1.87e-5, rel=0.01)
    assert comparison.text().endswith("lift +29%, p = 1.9e-05 (significant at 5%)")


def test_nothing_to_compare_is_said_so() -> None:
    assert Comparison("B", "A", Rate(10, 0), Rate(10, 0)).text() == (
        "B converts 0.0% vs 0.0% for A, no test (no conversions to compare)"
    )
    assert Comparison("B", "A", Rate(10, 1), Rate()).text() == (
        "B vs A: not enough entries to compare"
    )


def test_messaged_against_holdout_and_each_variant_against_the_first() -> None:
    figures = VersionFigures(
        messaged=Rate(900, 45),
        holdout=Rate(100, 2),
        variants={"split": {"a": Rate(450, 20), "b": Rate(450, 25)}},
    )

    assert [(c.name, c.baseline_name) for c in figures.comparisons()] == [
        ("messaged", "holdout"),
        ("split=b", "split=a"),
    ]
    compared = figures.to_json()["comparisons"]
    assert compared[0]["lift"] == 1.5 and compared[0]["text"].startswith(
        "messaged converts 5.0% vs 2.0% for holdout, lift +150%"
    )


def test_each_variant_is_compared_with_its_splits_first_branch_as_defined() -> None:
    """`control` listed first is the baseline, though `b` comes first by name; a split the
    definitions do not name falls back to the first by name."""
    figures = VersionFigures(
        messaged=Rate(900, 45),
        holdout=Rate(),
        variants={
            "offer": {"b": Rate(300, 20), "control": Rate(300, 10), "d": Rate(300, 15)},
            "old": {"x": Rate(10, 1), "y": Rate(10, 2)},
        },
    )
    journey = load_journey_text(SPLIT_JOURNEY)
    assert first_branches(journey) == {"offer": "control"}
    compared = figures.comparisons(first_branches(journey))
    assert [(c.name, c.baseline_name) for c in compared] == [
        ("offer=b", "offer=control"),
        ("offer=d", "offer=control"),
        ("old=y", "old=x"),
    ]
    assert [c["baseline"] for c in figures.to_json(first_branches(journey))["comparisons"]] == [
        "offer=control",
        "offer=control",
        "old=x",
    ]
