"""The worker's stage histograms, which the benchmark's latency breakdown is read from."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from app.worker.metrics import (
    MAX_BUFFERED_SENDS,
    STAGE_BUCKETS,
    STAGES,
    WorkerMetrics,
    histogram_quantile,
    stage_bound,
    stage_bucket,
)


@pytest.mark.parametrize("seconds", [0.00013, 0.001, 0.0123, 0.2, 0.9999, 1.0, 3.7, 42.0])
def test_a_duration_falls_in_the_bucket_whose_upper_bound_is_within_12_percent_above_it(
    seconds: float,
) -> None:
    bound = stage_bound(stage_bucket(seconds))
    assert seconds <= bound < seconds * 1.13


def test_durations_outside_the_range_go_to_the_first_and_the_last_bucket() -> None:
    assert stage_bucket(-0.5) == stage_bucket(0.0) == stage_bucket(0.00005) == 0
    assert stage_bucket(10_000.0) == STAGE_BUCKETS - 1


def test_quantiles_of_a_histogram_are_the_upper_bounds_where_the_share_is_reached() -> None:
    counts = [0] * STAGE_BUCKETS
    counts[stage_bucket(0.01)] = 90
    counts[stage_bucket(0.5)] = 9
    counts[stage_bucket(2.0)] = 1
    assert histogram_quantile(counts, 0.5) == stage_bound(stage_bucket(0.01))
    assert histogram_quantile(counts, 0.99) == stage_bound(stage_bucket(0.5))
    assert histogram_quantile(counts, 1.0) == stage_bound(stage_bucket(2.0))
    assert histogram_quantile([0] * STAGE_BUCKETS, 0.5) == 0.0


def test_a_batch_timer_counts_each_stage_once_per_input_with_its_laps_added() -> None:
    metrics = WorkerMetrics()
    timer = metrics.batch_timer(inputs=30)
    time.sleep(0.02)
    timer.lap("store")
    timer.lap("engine")
    time.sleep(0.02)
    timer.lap("store")  # a second round of the same batch
    timer.done()
    store = metrics.stages["store"]
    assert sum(store) == 30
    assert 0.04 <= histogram_quantile(store, 0.5) < 0.2
    assert (
        sum(metrics.stages["engine"]) == 30
        and histogram_quantile(metrics.stages["engine"], 1) < 0.01
    )
    assert sum(metrics.stages["emit"]) == 0


def _user(*dispatch_ids: str) -> SimpleNamespace:
    outbox = [{"kind": "send", "dispatch_id": d} for d in dispatch_ids]
    return SimpleNamespace(outbox=[*outbox, {"kind": "analytics", "name": "entered"}])


def test_the_hold_runs_from_a_send_handed_to_the_emitter_to_its_dispatch_record() -> None:
    metrics = WorkerMetrics()
    metrics.sends_buffering([_user("a", "b"), _user("c")])
    time.sleep(0.05)
    metrics.sends_buffering([_user("a")])  # emitted again: keeps its first time
    metrics.sends_produced(["a", "b", "elsewhere"])  # one another worker buffered
    hold = metrics.stages["hold"]
    assert sum(hold) == 2 and histogram_quantile(hold, 0) >= 0.05
    metrics.sends_produced(["a"])  # produced again after a retry: no second sample
    assert sum(metrics.stages["hold"]) == 2


def test_sends_that_never_leave_through_this_worker_are_forgotten_oldest_first() -> None:
    metrics = WorkerMetrics()
    metrics.sends_buffering([_user(*(f"d{i}" for i in range(MAX_BUFFERED_SENDS + 10)))])
    metrics.sends_produced(["d0", f"d{MAX_BUFFERED_SENDS + 9}"])
    assert sum(metrics.stages["hold"]) == 1  # d0 was dropped to keep the bound


def test_the_snapshot_carries_every_stage_histogram() -> None:
    metrics = WorkerMetrics()
    metrics.observe_stage("kafka", 0.003, inputs=4)
    histograms = metrics.snapshot()["stage_histograms"]
    assert isinstance(histograms, dict) and set(histograms) == set(STAGES)
    assert histograms["kafka"][stage_bucket(0.003)] == 4
