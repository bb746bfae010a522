"""Time scales of generated cases. `live` durations are seconds, so a live run over the real
servers settles in about a minute; `sim` durations are the realistic hours and days. Every timer
a `live` case can set is due either within `settle` of the case's base time or at least `far`
after it (a time of day that passed, waiting for tomorrow), never in between."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class TimeScale:
    name: str
    # Delays, wait_for timeouts, path delays.
    durations: tuple[str, ...]
    # Condition windows, entry windows, goals, cooldowns and frequency-cap windows.
    windows: tuple[str, ...]
    # Seconds between two events of one user, and the largest head start of a user.
    gap_seconds: tuple[int, int]
    start_seconds: int
    # How far ahead a date attribute (for `until_attribute` delays) is set, in seconds.
    ahead_seconds: tuple[int, int]
    settle: timedelta
    far: timedelta

    @property
    def live(self) -> bool:
        return self.name == "live"

    def duration(self, rng: random.Random) -> str:
        return rng.choice(self.durations)

    def window(self, rng: random.Random) -> str:
        return rng.choice(self.windows)

    def gap(self, rng: random.Random) -> timedelta:
        return timedelta(seconds=rng.randint(*self.gap_seconds))

    def ahead(self, rng: random.Random, base: datetime) -> datetime:
        return base + timedelta(seconds=rng.randint(*self.ahead_seconds))


LIVE = TimeScale(
    name="live",
    durations=tuple(f"{s}s" for s in range(2, 21)),
    # A goal window is a timer for holdout entries: seconds, or an hour (past the run).
    windows=("5s", "10s", "20s", "30s", "1h"),
    gap_seconds=(0, 4),
    start_seconds=4,
    ahead_seconds=(6, 40),
    settle=timedelta(seconds=150),
    far=timedelta(minutes=20),
)

SIM = TimeScale(
    name="sim",
    durations=("30m", "1h", "90m", "1h30m", "3h", "6h", "1d", "2d", "3d", "1w", 5400),
    windows=("1h", "4h", "12h", "1d", "3d", "7d"),
    gap_seconds=(0, 36 * 3600),
    start_seconds=6 * 3600,
    ahead_seconds=(3600, 5 * 86400),
    settle=timedelta(days=60),
    far=timedelta(days=60),
)
