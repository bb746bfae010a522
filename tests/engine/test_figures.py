"""Figures kept as counts (app/engine/figures.py): what each timeline record adds, bounded names
for reasons, and the conversions the counts give, equal to the conversions counted from the
records themselves on generated cases."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime

import pytest

from app.engine import Analytics
from app.engine.conversions import conversion_figures, conversions_from_counts
from app.engine.figures import (
    NO_STEP,
    hour_of,
    increments,
    reason_kind,
    send_outcome_figures,
)
from app.engine.simulator import Simulator
from tests.generated import SIM, generate_case

AT = datetime(2026, 11, 2, 9, 41, 7, tzinfo=UTC)
HOUR = datetime(2026, 11, 2, 9, tzinfo=UTC)


def record(event: str, step: str | None = None, reason: str | None = None, **more) -> dict:
    return Analytics(event, "j", 2, "ada", "e1", step, AT, reason, **more).to_record()


def test_each_event_counts_where_it_happened_with_a_bounded_name() -> None:
    records = [
        record("entered", reason="holdout (control group: no messages)", holdout=True),
        record("entered"),
        record("waited", "wait", "timed out"),
        record("waited", "wait", "performed purchased"),
        record("waited", "hello", "quiet hours until 08:00"),
        record("decided", "is_pro", "yes: attribute plan is pro"),
        record("decided", "is_pro", "no: attribute plan is pro"),
        record("path_chosen", "choose", "path fast: first eligible when due"),
        record("path_dropped", "choose", "path slow: dropped, path fast won first"),
        record("path_skipped", "choose", "path slow: conditions did not hold when due"),
        record("path_chosen", "ab", "split branch b", variants=(("ab", "b"),)),
        record("suppressed", "hello", "frequency cap 2 per 1d on email"),
        record("exited", reason="exit event unsubscribed"),
        record("converted", reason="purchased within 3d", variants=(("ab", "b"),)),
        record("not_entered", reason="re-entry blocked: cooldown until 2026-11-03 09:00 UTC"),
        record("entry_limited", reason="entry limit reached (100 per 1h)"),
        {"kind": "send", "journey_id": "j", "journey_version": 2, "send_at": "2026-11-02T09:00Z"},
    ]
    counts = increments(records)
    assert set(counts) == {("j", 2, HOUR, step) for step in (NO_STEP, "wait", "hello", "is_pro",
                                                              "choose", "ab")}  # fmt: skip
    assert counts[("j", 2, HOUR, NO_STEP)] == Counter(
        {
            "entered": 2,
            "holdout:entered": 1,
            "exited": 1,
            "exited:exit event": 1,
            "converted": 1,
            "not_entered": 1,
            "not_entered:re-entry blocked": 1,
            "entry_limited": 1,
        }
    )
    assert counts[("j", 2, HOUR, "wait")] == Counter({"timed out": 1, "performed": 1})
    assert counts[("j", 2, HOUR, "hello")] == Counter(
        {"waited:quiet hours": 1, "suppressed": 1, "suppressed:frequency cap": 1}
    )
    assert counts[("j", 2, HOUR, "is_pro")] == Counter({"decided:yes": 1, "decided:no": 1})
    assert counts[("j", 2, HOUR, "choose")] == Counter(
        {"won:fast": 1, "dropped:slow": 1, "skipped:slow": 1}
    )
    assert counts[("j", 2, HOUR, "ab")] == Counter({"variant:b": 1, "variant:b:converted": 1})


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("version 2 archived: users asked to exit", "version archived"),
        ("exit condition attribute plan is pro", "exit condition"),
        ("not in the audience (attribute plan is pro)", "not in the audience"),
        ("after the journey ended (2026-11-02 09:00 UTC)", "after the journey ended"),
        ("unsubscribed from product_updates", "unsubscribed from product_updates"),
        ("on list v1.2 $x", "on list _x"),
        (None, "unknown"),
    ],
)
def test_a_reason_keeps_its_kind_and_loses_its_times_and_counts(reason, kind) -> None:
    assert reason_kind(reason) == kind


def test_send_outcomes_and_hours() -> None:
    assert send_outcome_figures("sent", None) == ["sent"]
    assert send_outcome_figures("suppressed", "hard bounce") == [
        "suppressed at send",
        "suppressed at send:hard bounce",
    ]
    assert send_outcome_figures("duplicate", None) == []
    assert hour_of("2026-11-02T09:59:59.999Z") == HOUR
    assert hour_of(datetime(2026, 11, 2, 10, 59)) == datetime(2026, 11, 2, 10, tzinfo=UTC)


@pytest.mark.parametrize("seed", range(12))
def test_conversions_from_the_counts_equal_those_from_the_records(seed: int) -> None:
    """Generated journeys (holdouts, goals, splits) and events through the simulator: the
    counts, summed over hours as a store reads them, give the records' conversion figures."""
    case = generate_case(seed, SIM)
    simulator = Simulator(case.engine())
    simulator.feed(case.user_events())
    simulator.finish()
    records = [e.effect.to_record() for e in simulator.effects if isinstance(e.effect, Analytics)]
    per_journey: dict[str, list[dict]] = defaultdict(list)
    for item in records:
        per_journey[item["journey_id"]].append(item)
    assert per_journey, case.describe()
    for journey_id, journey_records in per_journey.items():
        summed: dict[int, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
        for (_, version, _, step), counts in increments(journey_records).items():
            summed[version][step].update(counts)
        from_counts = conversions_from_counts(summed)
        from_records = conversion_figures(journey_records)
        assert {v: f.to_json() for v, f in from_counts.items()} == {
            v: f.to_json() for v, f in from_records.items()
        }, (journey_id, case.describe())


def test_the_generated_cases_exercise_holdouts_variants_and_conversions() -> None:
    """The equality above is not vacuous: across its seeds there are conversions, holdout
    entries and split variants."""
    seen: Counter[str] = Counter()
    for seed in range(12):
        case = generate_case(seed, SIM)
        simulator = Simulator(case.engine())
        simulator.feed(case.user_events())
        simulator.finish()
        for item in simulator.effects:
            if isinstance(item.effect, Analytics):
                effect = item.effect
                seen["converted"] += effect.event == "converted"
                seen["holdout"] += effect.holdout
                seen["variants"] += bool(effect.variants)
    assert seen["converted"] and seen["holdout"] and seen["variants"], seen
