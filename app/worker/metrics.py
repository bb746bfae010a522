"""The worker's counters, read by the metrics endpoint and the benchmarks."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from app.engine import TimerFired


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
    versions_missing: int = 0  # users whose inputs were first held up by a version not loaded
    inputs_parked: int = 0  # inputs parked in user documents for such a version
    timers_applied: int = 0
    timer_lateness_sum: float = 0.0  # seconds, over every timer applied (the samples are recent)
    # Recent timer lateness samples in seconds (processed - due), bounded.
    timer_lateness: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))

    def observe_input(self, item: object, now: datetime) -> None:
        self.transitions += 1
        if isinstance(item, TimerFired):
            lateness = (now - item.due_at).total_seconds()
            self.timers_applied += 1
            self.timer_lateness_sum += lateness
            self.timer_lateness.append(lateness)

    def snapshot(self) -> dict[str, float | list[float]]:
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
            "versions_missing": self.versions_missing,
            "inputs_parked": self.inputs_parked,
            "timers_applied": self.timers_applied,
            "timer_lateness_sum": self.timer_lateness_sum,
            "timer_lateness_samples": len(lateness),  # so several workers' can be merged
            "timer_lateness_p50": quantile(0.5),
            "timer_lateness_p99": quantile(0.99),
            "timer_lateness_percentiles": [quantile(i / 100) for i in range(101)],
        }
