"""Conversions counted from analytics records (an `Analytics` effect's record, or the timeline
document the worker keeps of it): per journey version, for the holdout (the control group) and
the rest, and per split variant. Pure, so `journeys simulate` and the API count the same way."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from app.engine.definitions import Journey, SplitStep
from app.engine.figures import CONVERTED, HOLDOUT, VARIANT

Z_95 = 1.959964  # the normal quantile of a two-sided 95% interval


@dataclass
class Rate:
    """Entries and, of them, conversions."""

    entered: int = 0
    converted: int = 0

    @property
    def share(self) -> float | None:
        return self.converted / self.entered if self.entered else None

    def interval(self) -> tuple[float, float] | None:
        """The Wilson score 95% interval of the rate: honest at small counts and at 0 or 100%,
        where the normal approximation gives an interval of width zero."""
        if not self.entered:
            return None
        n, p, z2 = self.entered, self.converted / self.entered, Z_95 * Z_95
        centre = (p + z2 / (2 * n)) / (1 + z2 / n)
        half = Z_95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
        return max(0.0, centre - half), min(1.0, centre + half)

    def to_json(self) -> dict[str, Any]:
        share, interval = self.share, self.interval()
        return {
            "entered": self.entered,
            "converted": self.converted,
            "rate": round(share, 4) if share is not None else None,
            "interval_95": [round(bound, 4) for bound in interval] if interval else None,
        }


@dataclass(frozen=True)
class Comparison:
    """One group against a baseline: the lift of its rate and a two-proportion z-test (pooled),
    enough to tell a real difference from noise at the sizes lifecycle messages reach."""

    name: str
    baseline_name: str
    rate: Rate
    baseline: Rate

    def p_value(self) -> float | None:
        a, b = self.rate, self.baseline
        if not a.entered or not b.entered:
            return None
        pooled = (a.converted + b.converted) / (a.entered + b.entered)
        spread = math.sqrt(pooled * (1 - pooled) * (1 / a.entered + 1 / b.entered))
        if spread == 0:
            return None  # no conversions at all, or only conversions: nothing to test
        z = ((a.share or 0.0) - (b.share or 0.0)) / spread
        return math.erfc(abs(z) / math.sqrt(2))

    def lift(self) -> float | None:
        a, b = self.rate.share, self.baseline.share
        return (a - b) / b if a is not None and b else None

    def text(self) -> str:
        """In plain words: "B converts 3.1% vs 2.4% for A, lift +29%, p = 0.02"."""
        a, b = self.rate.share, self.baseline.share
        if a is None or b is None:
            return f"{self.name} vs {self.baseline_name}: not enough entries to compare"
        lift, p = self.lift(), self.p_value()
        said = f"{self.name} converts {a:.1%} vs {b:.1%} for {self.baseline_name}"
        said += f", lift {lift:+.0%}" if lift is not None else ""
        said += f", p = {p:.2g}" if p is not None else ", no test (no conversions to compare)"
        if p is not None:
            said += " (significant at 5%)" if p < 0.05 else " (not significant at 5%)"
        return said

    def to_json(self) -> dict[str, Any]:
        lift, p = self.lift(), self.p_value()
        return {
            "group": self.name,
            "baseline": self.baseline_name,
            "lift": round(lift, 4) if lift is not None else None,
            "p_value": round(p, 4) if p is not None else None,
            "text": self.text(),
        }


@dataclass
class VersionFigures:
    messaged: Rate
    holdout: Rate
    # split step -> branch -> entries sent down that branch, and their conversions
    variants: dict[str, dict[str, Rate]]

    def comparisons(self, baselines: Mapping[str, str] | None = None) -> list[Comparison]:
        """The messaged users against the holdout (the treatment's lift), and each split variant
        against its split's baseline: `baselines` maps a split to the first branch of its
        definition (`first_branches`), the one the flow page compares with too; a split it does
        not name (no definition at hand) is compared with its first variant by name."""
        found = []
        if self.holdout.entered:
            found.append(Comparison("messaged", "holdout", self.messaged, self.holdout))
        for step, branches in sorted(self.variants.items()):
            first = (baselines or {}).get(step) or min(branches)
            baseline = branches.get(first, Rate())
            found += [
                Comparison(f"{step}={name}", f"{step}={first}", rate, baseline)
                for name, rate in sorted(branches.items())
                if name != first
            ]
        return found

    def to_json(self, baselines: Mapping[str, str] | None = None) -> dict[str, Any]:
        total = Rate(
            self.messaged.entered + self.holdout.entered,
            self.messaged.converted + self.holdout.converted,
        )
        return {
            "all": total.to_json(),
            "messaged": self.messaged.to_json(),
            "holdout": self.holdout.to_json(),
            "variants": {
                step: {branch: rate.to_json() for branch, rate in sorted(branches.items())}
                for step, branches in sorted(self.variants.items())
            },
            "comparisons": [comparison.to_json() for comparison in self.comparisons(baselines)],
        }


def first_branches(journey: Journey) -> dict[str, str]:
    """Each split step's first branch in the journey's definition: the baseline of its variants."""
    return {
        step.id: step.branches[0].id
        for step in journey.steps.values()
        if isinstance(step, SplitStep) and step.branches
    }


def conversion_figures(records: Iterable[Mapping[str, Any]]) -> dict[int, VersionFigures]:
    """Version -> figures, from one journey's analytics records: `entered` counts an entry (in
    the holdout when marked so), a split's `path_chosen` an entry sent down a variant, and
    `converted` a conversion with the variants its entry took."""
    figures: dict[int, VersionFigures] = {}
    for record in records:
        if record.get("kind") != "analytics":
            continue
        version = figures.setdefault(
            int(record["journey_version"]), VersionFigures(Rate(), Rate(), {})
        )
        group = version.holdout if record.get("holdout") else version.messaged
        event = record["event"]
        variants: Mapping[str, str] = record.get("variants") or {}
        if event == "entered":
            group.entered += 1
        elif event == "converted":
            group.converted += 1
        for step, branch in variants.items():
            rate = version.variants.setdefault(step, {}).setdefault(branch, Rate())
            if event == "path_chosen":
                rate.entered += 1
            elif event == "converted":
                rate.converted += 1
    return figures


def conversions_from_counts(
    versions: Mapping[int, Mapping[str, Mapping[str, int]]],
) -> dict[int, VersionFigures]:
    """The same figures as `conversion_figures`, from the counts `app.engine.figures` keeps
    (version -> step -> figure -> count): `entered`, `converted` and their `holdout:` share, and
    `variant:B` / `variant:B:converted` at each split step."""
    found: dict[int, VersionFigures] = {}
    for version, steps in versions.items():
        figures = found.setdefault(version, VersionFigures(Rate(), Rate(), {}))
        for step, counts in steps.items():
            figures.holdout.entered += counts.get(HOLDOUT + "entered", 0)
            figures.holdout.converted += counts.get(HOLDOUT + "converted", 0)
            figures.messaged.entered += counts.get("entered", 0) - counts.get(
                HOLDOUT + "entered", 0
            )
            figures.messaged.converted += counts.get("converted", 0) - counts.get(
                HOLDOUT + "converted", 0
            )
            for name, count in counts.items():
                if not name.startswith(VARIANT):
                    continue
                branch = name.removeprefix(VARIANT)
                converted = branch.endswith(CONVERTED)
                rate = figures.variants.setdefault(step, {}).setdefault(
                    branch.removesuffix(CONVERTED), Rate()
                )
                if converted:
                    rate.converted += count
                else:
                    rate.entered += count
    return found
