"""Every Redis key family, pinned: a key that changes form strands what an older process wrote
(locks, buffered sends, claims), so any change here must be deliberate."""

from __future__ import annotations

from datetime import UTC, datetime

from app.dispatch.record import DispatchStep
from app.keyspace import Keyspace

KEYS = Keyspace("journeys")
STEP = DispatchStep("onboarding", 2, "welcome", "email", "welcome-mail")
BUCKET = datetime(2026, 11, 2, 9, 15, tzinfo=UTC)


def test_every_key_family_keeps_its_form() -> None:
    assert (
        KEYS.branch_lock("u-1", "onboarding:u-1:e-1") == "journeys:branch:{u-1}:onboarding:u-1:e-1"
    )
    assert KEYS.emitted_mark("u-1") == "journeys:emitted:{u-1}"
    assert KEYS.send_buffer_index() == "journeys:send-buffers"
    assert (
        KEYS.send_buffer(STEP, BUCKET) == "journeys:send-buffer:{onboarding:2:welcome}:1793610900"
    )
    assert KEYS.send_buffer_lease(STEP) == "journeys:send-buffer:{onboarding:2:welcome}:lease"
    assert KEYS.due_index(3) == "journeys:due:{p3}"
    assert KEYS.epoch() == "journeys:epoch"
    assert KEYS.delivery_claim("0f2a") == "journeys:delivery:{0f2a}"
    assert KEYS.rate_limiter("push") == "journeys:ratelimit:{push}"
    assert KEYS.transactional_send("0f2a") == "journeys:transactional:{0f2a}"
    assert KEYS.worker_metrics() == "journeys:worker-metrics"
