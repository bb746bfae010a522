"""Every Redis key family, pinned: a key that changes form strands what an older process wrote
(locks, buffered sends, claims), so any change here must be deliberate."""

from __future__ import annotations

from datetime import UTC, datetime

from redis.crc import key_slot

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
    assert KEYS.send_buffer_index(3) == "journeys:send-buffers:{sb3}"
    assert KEYS.send_buffer_index_of(STEP) == "journeys:send-buffers:{sb10}"
    assert (
        KEYS.send_buffer(STEP, BUCKET) == "journeys:send-buffer:{onboarding:2:welcome}:1793610900"
    )
    assert KEYS.send_buffer_lease(STEP) == "journeys:send-buffer:{onboarding:2:welcome}:lease"
    assert KEYS.due_index(3) == "journeys:due:{p3}"
    assert KEYS.epoch() == "journeys:epoch"
    assert KEYS.cluster_epoch("epoch-2") == "journeys:epoch:{epoch-2}"
    assert KEYS.delivery_claim("0f2a") == "journeys:delivery:{0f2a}"
    assert KEYS.rate_limiter("push") == "journeys:ratelimit:{push}"
    assert KEYS.transactional_send("0f2a") == "journeys:transactional:{0f2a}"
    assert KEYS.worker_metrics("w-1") == "journeys:worker-metrics:{wm2}"
    assert KEYS.sender_metrics() == "journeys:sender-metrics:{sm}"


def test_the_hot_indexes_spread_over_every_master_of_a_three_master_cluster() -> None:
    """`redis-cli --cluster create` gives three masters these slots; each gets some shards of the
    send-buffer index and of the workers' metrics, and steps spread over the shards."""
    masters = [(0, 5460), (5461, 10922), (10923, 16383)]

    def masters_of(keys: list[str]) -> set[int]:
        slots = [key_slot(key.encode()) for key in keys]
        return {i for slot in slots for i, (lo, hi) in enumerate(masters) if lo <= slot <= hi}

    assert masters_of(KEYS.send_buffer_indexes()) == {0, 1, 2}
    assert masters_of(KEYS.worker_metrics_shards()) == {0, 1, 2}
    steps = [DispatchStep("j", 1, f"step-{i}", "email", "t") for i in range(64)]
    assert len({KEYS.send_buffer_index_of(step) for step in steps}) == 16
