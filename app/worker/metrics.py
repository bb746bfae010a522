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
    dead_letters: int = 0
    sends_buffered: int = 0
    branch_refused: int = 0
    timers_published: int = 0
    # Recent timer lateness samples in seconds (processed - due), bounded.
    timer_lateness: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))

    def observe_input(self, item: object, now: datetime) -> None:
        self.transitions += 1
        if isinstance(item, TimerFired):
            self.timer_lateness.append((now - item.due_at).total_seconds())

    @property
    def writes_per_input(self) -> float:
        return self.state_writes / self.inputs if self.inputs else 0.0
