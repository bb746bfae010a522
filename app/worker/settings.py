"""The worker's tunables, from the environment (defaults suit one machine)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, str(default)))


def _float(name: str, default: float) -> float:
    return float(os.environ.get(name, str(default)))


@dataclass(frozen=True)
class WorkerSettings:
    app_id: str = field(default_factory=lambda: os.environ.get("WORKER_APP_ID", "journeys-worker"))
    # Micro-batches: up to this many inputs, or what arrived within this many seconds.
    batch_size: int = field(default_factory=lambda: _int("WORKER_BATCH_SIZE", 500))
    batch_within: float = field(default_factory=lambda: _float("WORKER_BATCH_WITHIN", 0.2))
    max_record_bytes: int = field(default_factory=lambda: _int("MAX_RECORD_BYTES", 256 * 1024))
    send_batch_size: int = field(default_factory=lambda: _int("SEND_BATCH_SIZE", 200))
    send_bucket_seconds: int = field(default_factory=lambda: _int("SEND_BUCKET_SECONDS", 1))
    # A record of fewer than send_batch_size leaves once the flow paused this long, or at the
    # latest after the max wait.
    send_hold_seconds: float = field(default_factory=lambda: _float("SEND_HOLD_SECONDS", 1.0))
    send_max_wait_seconds: float = field(
        default_factory=lambda: _float("SEND_MAX_WAIT_SECONDS", 5.0)
    )
    batcher_interval: float = field(default_factory=lambda: _float("BATCHER_INTERVAL", 0.2))
    timer_pump_interval: float = field(default_factory=lambda: _float("TIMER_PUMP_INTERVAL", 0.2))
    timer_lease_seconds: float = field(default_factory=lambda: _float("TIMER_LEASE_SECONDS", 30))
    # The MongoDB scan behind the Redis due index: a collection scan on FerretDB, so not often.
    timer_sweep_interval: float = field(
        default_factory=lambda: _float("TIMER_SWEEP_INTERVAL", 3600.0)
    )
    journeys_poll_interval: float = field(
        default_factory=lambda: _float("JOURNEYS_POLL_INTERVAL", 2.0)
    )
    scheduler_interval: float = field(default_factory=lambda: _float("SCHEDULER_INTERVAL", 15.0))
    # No shorter than an entry can live: a lock that expires early could admit a second branch.
    branch_lock_ttl_seconds: int = field(
        default_factory=lambda: _int("BRANCH_LOCK_TTL_SECONDS", 90 * 24 * 3600)
    )
    web_port: int = field(default_factory=lambda: _int("WORKER_WEB_PORT", 0))
