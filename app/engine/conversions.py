"""Conversions counted from analytics records (an `Analytics` effect's record, or the timeline
document the worker keeps of it): per journey version, for the holdout (the control group) and
the rest, and per split variant. Pure, so `journeys simulate` and the API count the same way."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass
class Rate:
    """Entries and, of them, conversions."""

    entered: int = 0
    converted: int = 0

    def to_json(self) -> dict[str, Any]:
        share = round(self.converted / self.entered, 4) if self.entered else None
        return {"entered": self.entered, "converted": self.converted, "rate": share}


@dataclass
class VersionFigures:
    messaged: Rate
    holdout: Rate
    # split step -> branch -> entries sent down that branch, and their conversions
    variants: dict[str, dict[str, Rate]]

    def to_json(self) -> dict[str, Any]:
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
