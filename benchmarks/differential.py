"""The long differential run: many generated cases through the live pipeline, a group of cases
per pipeline one group after the other, each group against the simulator exactly as the
differential test compares them (tests/differential.py).

    scripts/bench --differential N [--seed S]

Prints each group's seeds and every divergence with the command that replays it, and writes
benchmarks/results/differential.json."""

from __future__ import annotations

import random
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.config import Settings
from tests.differential import Outcome, run_generated
from tests.pipeline import live_pipeline

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "differential.json"
# Cases per pipeline: as many as one run settles in a few minutes on two cores.
GROUP = 20


def replay(seeds: list[int]) -> str:
    return (
        f"scripts/bench --differential {len(seeds)} --seed {seeds[0]}   (or "
        f"DIFFERENTIAL_SEED={seeds[0]} DIFFERENTIAL_CASES={len(seeds)} "
        ".venv/bin/pytest tests/worker/test_differential.py -k generated)"
    )


def divergence(outcome: Outcome) -> dict[str, Any]:
    return {
        "seeds": outcome.seeds,
        "divergent_cases": [case.seed for case in outcome.divergent_cases()],
        "base": outcome.base.isoformat(),
        "missing_deliveries": len(outcome.expected - outcome.got),
        "unexpected_deliveries": len(outcome.got - outcome.expected),
        "missing_on_timeline": len(outcome.marks - outcome.timeline),
        "unexpected_on_timeline": len(outcome.timeline - outcome.marks),
        "replay": replay(outcome.seeds),
    }


def git_commit() -> str:
    result = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


async def run(count: int, seed: int | None) -> dict[str, Any]:
    """Runs `count` cases from `seed` (a random one when None) in groups of GROUP."""
    first = seed if seed is not None else random.SystemRandom().randrange(10_000, 1_000_000)
    settings = Settings()
    started = time.monotonic()
    divergences: list[dict[str, Any]] = []
    unplayable: list[dict[str, Any]] = []
    expected = received = 0
    for start in range(first, first + count, GROUP):
        seeds = list(range(start, min(start + GROUP, first + count)))
        print(f"differential: seeds {seeds[0]}..{seeds[-1]}", flush=True)
        with tempfile.TemporaryDirectory() as directory:
            async with live_pipeline(settings, Path(directory)) as pipeline:
                outcome = await run_generated(
                    pipeline, Path(directory), seeds, skip_unplayable=True
                )
        expected += len(outcome.expected)
        received += len(outcome.got)
        print(f"differential: {outcome.title()}", flush=True)
        for case_seed, why in outcome.unplayable:
            # A generator limit, not a divergence: the case's events were not published.
            unplayable.append({"seed": case_seed, "base": outcome.base.isoformat(), "why": why})
            print(f"differential: case {case_seed} left out: {why}", flush=True)
        if outcome.diverged:
            divergences.append(divergence(outcome))
            print(outcome.explain(), flush=True)
            print(f"differential: DIVERGED; replay with: {replay(seeds)}", flush=True)
    return {
        "cases": count - len(unplayable),
        "cases_generated": count,
        "unplayable": unplayable,
        "group_size": GROUP,
        "first_seed": first,
        "divergences": divergences,
        "deliveries_expected": expected,
        "deliveries_received": received,
        "duration_s": time.monotonic() - started,
        "at": datetime.now(UTC).isoformat(),
        "git_commit": git_commit(),
    }
