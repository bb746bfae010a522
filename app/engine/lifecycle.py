"""What the registry knows of a deployed journey version that decides who enters and who exits.
The registry hands it to the engine and the engine decides, so the simulator and the workers
apply the same rules: only a published version takes new entries (a paused or archived one takes
none), users parked at a paused version's message wait and re-check with backoff, and entries
the operator asked to exit (`--exit-users`) exit at their next input."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

DRAFT = "draft"
PUBLISHED = "published"
PAUSED = "paused"
ARCHIVED = "archived"
STATUSES = (DRAFT, PUBLISHED, PAUSED, ARCHIVED)

# A user who reaches a message while the version is paused waits there and looks again after
# the time it has waited so far, within these bounds: 5 s, 10 s, 20 s, ... then every 15 min.
PAUSE_RECHECK_FIRST = timedelta(seconds=5)
PAUSE_RECHECK_MAX = timedelta(minutes=15)


class VersionMissing(LookupError):
    """An input reaches an entry of a journey version the engine was not given (a draft, or one
    this worker has not loaded yet). Names the journey and version, never the user."""

    def __init__(self, journey_id: str, version: int) -> None:
        self.journey_id = journey_id
        self.version = version
        super().__init__(f"journey {journey_id} version {version} is not loaded")


@dataclass(frozen=True)
class Deployment:
    """One journey version as deployed. The defaults are what the simulator assumes without
    being told: published, no one asked to exit, and published before any event."""

    status: str = PUBLISHED
    # Entries that began before this time exit at their next input (`--exit-users`).
    exit_entered_before: datetime | None = None
    # When the journey's first version was first published: an event-triggered journey enters
    # users only for events at or after it, unless the file says `enter_past_events: true`.
    published_at: datetime | None = None

    def exits(self, entered_at: datetime) -> bool:
        return self.exit_entered_before is not None and entered_at < self.exit_entered_before


def recheck_after(waited: timedelta) -> timedelta:
    """How long a user parked at a paused message, having waited `waited`, waits again."""
    return min(PAUSE_RECHECK_MAX, max(PAUSE_RECHECK_FIRST, waited))
