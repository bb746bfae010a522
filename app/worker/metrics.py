"""The worker's counters, read by the metrics endpoint and the benchmarks."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from app.engine import TimerFired

# Where an input's time goes from Kafka to the send topic, for the benchmark's breakdown: Kafka
# (produced -> this worker's consumer, through the repartition step for events), waiting for its
# micro-batch (-> the batch starts), engine, store (load and commit), emit (send buffer and
# timeline, marks and due index), and the batcher's hold (sends handed to the emitter -> their
# dispatch record produced: it overlaps the emit stage by the emit's own send-buffer write).
STAGES = ("kafka", "batch_wait", "engine", "store", "emit", "hold")
# Stage histograms: buckets 20 per decade (12% wide) from 0.1 ms to 100 s, the last one open.
# Counts only grow, so the distribution of a period is the difference of two snapshots.
STAGE_SMALLEST = 1e-4
STAGE_BUCKETS_PER_DECADE = 20
STAGE_BUCKETS = 6 * STAGE_BUCKETS_PER_DECADE + 1
# Sends buffered whose dispatch record has not left yet (bounded: a send another worker's
# batcher takes, or one the branch lock refused, never leaves here).
MAX_BUFFERED_SENDS = 50_000


def stage_bucket(seconds: float) -> int:
    """The histogram bucket of a duration: the first whose upper bound is at least it."""
    if seconds <= STAGE_SMALLEST:
        return 0
    decades = math.log10(seconds / STAGE_SMALLEST)
    return min(STAGE_BUCKETS - 1, math.ceil(decades * STAGE_BUCKETS_PER_DECADE - 1e-9))


def stage_bound(bucket: int) -> float:
    """A bucket's upper bound in seconds."""
    return STAGE_SMALLEST * 10 ** (bucket / STAGE_BUCKETS_PER_DECADE)


def histogram_quantile(counts: list[int], q: float) -> float:
    """The upper bound of the bucket where a share `q` of the counts is reached (0 if none)."""
    total = sum(counts)
    seen = 0
    for bucket, count in enumerate(counts):
        seen += count
        if count and seen >= q * total:
            return stage_bound(bucket)
    return 0.0


class Outboxes(Protocol):
    outbox: list[dict[str, Any]]


@dataclass
class WorkerMetrics:
    inputs: int = 0
    transitions: int = 0
    state_writes: int = 0
    user_batches: int = 0  # (user, micro-batch) pairs: at most one state write each
    dead_letters: int = 0
    sends_buffered: int = 0
    branch_refused: int = 0
    timers_published: int = 0
    repartitioned: int = 0  # user-events records re-produced to user-events-by-user
    miskeyed: int = 0  # ... of which had no key or a key other than their user id
    in_place: int = 0  # user-events records applied where they were (on their user's partition)
    versions_missing: int = 0  # users whose inputs were first held up by a version not loaded
    inputs_parked: int = 0  # inputs parked in user documents for such a version
    timers_applied: int = 0
    timer_lateness_sum: float = 0.0  # seconds, over every timer applied (the samples are recent)
    # Recent timer lateness samples in seconds (processed - due), bounded.
    timer_lateness: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))
    # Per stage, how many inputs took each bucket's time (STAGES, stage_bucket).
    stages: dict[str, list[int]] = field(
        default_factory=lambda: {stage: [0] * STAGE_BUCKETS for stage in STAGES}
    )
    # Dispatch id -> when the send was handed to the emitter (perf counter).
    _buffered_at: dict[str, float] = field(default_factory=dict, init=False, repr=False)

    def observe_stage(self, stage: str, seconds: float, inputs: int = 1) -> None:
        self.stages[stage][stage_bucket(seconds)] += inputs

    def batch_timer(self, inputs: int) -> BatchTimer:
        return BatchTimer(self, inputs)

    def sends_buffering(self, users: Iterable[Outboxes]) -> None:
        """The sends about to go into the send buffer: their hold starts (a send emitted again
        keeps its first time)."""
        now = time.perf_counter()
        for user in users:
            for effect in user.outbox:
                if effect.get("kind") == "send":
                    self._buffered_at.setdefault(str(effect["dispatch_id"]), now)
        while len(self._buffered_at) > MAX_BUFFERED_SENDS:
            del self._buffered_at[next(iter(self._buffered_at))]

    def sends_produced(self, dispatch_ids: Iterable[str]) -> None:
        """Sends that left in a dispatch record: their hold ends."""
        now = time.perf_counter()
        for dispatch_id in dispatch_ids:
            if (buffered := self._buffered_at.pop(dispatch_id, None)) is not None:
                self.observe_stage("hold", now - buffered)

    def observe_input(self, item: object, now: datetime) -> None:
        self.transitions += 1
        if isinstance(item, TimerFired):
            lateness = (now - item.due_at).total_seconds()
            self.timers_applied += 1
            self.timer_lateness_sum += lateness
            self.timer_lateness.append(lateness)

    def snapshot(self) -> dict[str, float | list[float] | dict[str, list[int]]]:
        lateness = sorted(self.timer_lateness)

        def quantile(q: float) -> float:
            return lateness[min(len(lateness) - 1, int(q * len(lateness)))] if lateness else 0.0

        return {
            "inputs": self.inputs,
            "transitions": self.transitions,
            "state_writes": self.state_writes,
            "user_batches": self.user_batches,
            "dead_letters": self.dead_letters,
            "sends_buffered": self.sends_buffered,
            "branch_refused": self.branch_refused,
            "timers_published": self.timers_published,
            "repartitioned": self.repartitioned,
            "miskeyed_records": self.miskeyed,
            "applied_in_place": self.in_place,
            "versions_missing": self.versions_missing,
            "inputs_parked": self.inputs_parked,
            "timers_applied": self.timers_applied,
            "timer_lateness_sum": self.timer_lateness_sum,
            "timer_lateness_samples": len(lateness),  # so several workers' can be merged
            "timer_lateness_p50": quantile(0.5),
            "timer_lateness_p99": quantile(0.99),
            "timer_lateness_percentiles": [quantile(i / 100) for i in range(101)],
            "stage_histograms": {stage: list(counts) for stage, counts in self.stages.items()},
        }


class BatchTimer:
    """A micro-batch's time split into stages: each `lap` adds the time since the previous one
    to a stage, and `done` counts the batch's stage times once per input."""

    def __init__(self, metrics: WorkerMetrics, inputs: int) -> None:
        self._metrics = metrics
        self._inputs = inputs
        self._laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self._laps[stage] = self._laps.get(stage, 0.0) + now - self._last
        self._last = now

    def done(self) -> None:
        for stage, seconds in self._laps.items():
            self._metrics.observe_stage(stage, seconds, self._inputs)
