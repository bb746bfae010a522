"""The README's benchmark tables, rendered from the latest result of each size, so the figures in
the README are the ones the benchmark wrote.

    .venv/bin/python -m benchmarks.report
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

RESULTS_DIR = Path(__file__).resolve().parent / "results"
MODES = ("quick", "medium", "full")

Figures = dict[str, Any]


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _s(value: float) -> str:
    return f"{value:.2f} s"


def _against(results: Figures) -> str:
    """Runs before the ceilings were taken on the pipeline's own collection used an empty one."""
    return "" if "store_users" in results else " (against the empty-store ceiling)"


def _verdict(results: Figures, name: str, shown: str) -> str:
    """A figure with whether it met its target (runs before the target was set: the figure)."""
    if name not in results["targets"]:
        return shown
    return f"{shown}, met" if results["targets"][name]["met"] else f"{shown}, **not met**"


def _ms(value: float) -> str:
    return f"{value:.2f}"


def _cpu(results: Figures, per: str, names: tuple[str, ...]) -> str:
    """CPU ms per event (or delivery) of each process; a remote server's shows as -."""
    if f"cpu_ms_per_{per}_{names[0]}" not in results:
        raise KeyError(names[0])  # a run before CPU was measured
    return " / ".join(
        _ms(results[key]) if (key := f"cpu_ms_per_{per}_{name}") in results else "-"
        for name in names
    )


def _stages(results: Figures) -> str:
    """p50 / p99 of each stage, in seconds, the largest p50 in bold."""
    stages = results["e2e_stages"]
    largest = max(stages, key=lambda stage: stages[stage]["p50_s"])
    shown = [
        f"{stage} {figures['p50_s']:.3f} / {figures['p99_s']:.3f}"
        for stage, figures in stages.items()
    ]
    return "; ".join(f"**{text}**" if text.startswith(largest + " ") else text for text in shown)


ROWS: tuple[tuple[str, Callable[[Figures], str]], ...] = (
    ("Kafka produce-then-consume", lambda r: f"{_n(r['kafka_produce_consume_per_s'])} msg/s"),
    ("Redis `SET NX`, pipelined", lambda r: f"{_n(r['redis_set_nx_per_s'])} /s"),
    (
        "`find_one_and_update`, Motor / PyMongo async",
        lambda r: (
            f"{_n(r['mongo_find_one_and_update_motor_per_s'])} / "
            f"{_n(r['mongo_find_one_and_update_pymongo_per_s'])} /s"
        ),
    ),
    (
        "bulk CAS replaces on an empty store, Motor / PyMongo async",
        lambda r: (
            f"{_n(r['mongo_bulk_cas_motor_per_s'])} / {_n(r['mongo_bulk_cas_pymongo_per_s'])} /s"
        ),
    ),
    (
        "read by `$in` then bulk CAS (a micro-batch's store work), empty store",
        lambda r: f"{_n(r['mongo_read_and_cas_motor_per_s'])} users/s",
    ),
    (
        "**store ceiling**: bulk CAS on the pipeline's users collection after the burst",
        lambda r: f"{_n(r['store_bulk_cas_per_s'])} /s ({_n(r['store_users'])} documents)",
    ),
    (
        "read by `$in` then bulk CAS, on the pipeline's users collection",
        lambda r: f"{_n(r['store_read_and_cas_per_s'])} users/s",
    ),
    (
        "pipeline, user-events in to dispatch records out",
        lambda r: (
            f"{_n(r['pipeline_events_per_s'])} events/s ({_n(r['pipeline_events'])} "
            f"events, {_n(r['pipeline_users'])} users)"
        ),
    ),
    (
        "pipeline / store bulk-CAS ceiling (target >= 0.70)",
        lambda r: _verdict(
            r, "ratio_pipeline_to_store", f"{r['ratio_pipeline_to_store']:.2f}{_against(r)}"
        ),
    ),
    (
        "pipeline / read-and-CAS on the pipeline's users collection",
        lambda r: f"{r['ratio_pipeline_to_store_read_and_cas']:.2f}{_against(r)}",
    ),
    (
        "MongoDB writes per input; per user per micro-batch (target <= 1)",
        lambda r: _verdict(
            r,
            "mongo_writes_per_user_batch",
            f"{r['mongo_writes_per_input']:.2f}; {r['mongo_writes_per_user_batch']:.2f}",
        ),
    ),
    (
        "dispatch records per 1M sends (target <= 5,000)",
        lambda r: _verdict(
            r, "dispatch_records_per_1m_sends", _n(r["dispatch_records_per_1m_sends"])
        ),
    ),
    (
        "CPU ms per event in the burst: worker / FerretDB / Kafka / Redis / benchmark "
        "(target worker <= 0.30)",
        lambda r: _verdict(
            r,
            "cpu_ms_per_event_worker",
            _cpu(r, "event", ("worker", "mongo", "kafka", "redis", "benchmark")),
        ),
    ),
    (
        "event-to-dispatch latency p50 / p99 (target p99 <= 0.5 s)",
        lambda r: _verdict(
            r,
            "e2e_latency_p99_s",
            f"{_s(r['e2e_latency_p50_s'])} / {_s(r['e2e_latency_p99_s'])} at "
            f"{_n(r['e2e_paced_events_per_s'])} events/s",
        ),
    ),
    ("latency by stage, p50 / p99 in seconds", _stages),
    (
        "timer lateness p50 / p99 (target p99 <= 1 s)",
        lambda r: _verdict(
            r,
            "timer_lateness_p99_s",
            f"{_s(r['timer_lateness_p50_s'])} / {_s(r['timer_lateness_p99_s'])} with "
            f"{_n(r['pending_timers'])} pending",
        ),
    ),
    (
        "worker RSS, few users -> many (target ratio <= 1.25)",
        lambda r: (
            _verdict(
                r,
                "worker_rss_growth_ratio",
                f"{_n(r['worker_rss_after_warm_users_mb'])} -> "
                f"{_n(r['worker_rss_after_all_users_mb'])} MB ({r['worker_rss_growth_ratio']:.2f})",
            )
            + f"; peak {_n(r['worker_peak_rss_mb'])} MB"
        ),
    ),
    (
        "flow page through the API, p50 / max of its loads (target p50 <= 100 ms); "
        "waiting shown for the parked users",
        lambda r: _verdict(
            r,
            "flow_page_p50_s",
            f"{r['flow_page_p50_s'] * 1000:.0f} / {r['flow_page_max_s'] * 1000:.0f} ms with "
            f"{_n(r['flow_page_users'])} users; waiting {_n(r['flow_page_waiting_parked'])} "
            f"of {_n(r['pending_timers'])}",
        ),
    ),
    (
        "sender deliveries to the local provider stub",
        lambda r: f"{_n(r['sender_deliveries_per_s'])} /s",
    ),
    (
        "CPU ms per delivery: sender / FerretDB / Kafka / Redis",
        lambda r: _cpu(r, "delivery", ("sender", "mongo", "kafka", "redis")),
    ),
    (
        "store on disk at the end of the pipeline: database + write-ahead log (log's peak)",
        lambda r: (
            f"{_n(r['store_database_mb'])} + {_n(r['store_wal_mb'])} MB "
            f"({_n(r['store_wal_peak_mb'])} MB)"
        ),
    ),
    (
        "commit",
        lambda r: r["commit"][:12] + (" with uncommitted changes" if r["dirty"] else ""),
    ),
    (
        "fault suite at the benchmark's size",
        lambda r: (
            ("passed" if r["faults"]["passed"] else "**failed**")
            + f" ({r['faults']['wave_users']} users per wave)"
        ),
    ),
)


def load(mode: str) -> Figures | None:
    path = RESULTS_DIR / f"{mode}.json"
    return orjson.loads(path.read_bytes()) if path.exists() else None


def _cell(render: Callable[[Figures], str], results: Figures) -> str:
    try:
        return render(results)
    except KeyError:
        return "not measured in that run"  # a figure added after it


def figures_table(runs: dict[str, Figures]) -> str:
    lines = [
        "| figure | " + " | ".join(f"`{mode}`" for mode in runs) + " |",
        "| --- |" + " --- |" * len(runs),
    ]
    for label, render in ROWS:
        lines.append(f"| {label} | " + " | ".join(_cell(render, r) for r in runs.values()) + " |")
    return "\n".join(lines)


def fault_runs(faults: Figures) -> dict[str, Figures]:
    """Each Redis kind's figures. Results from before they were kept apart hold one set at the
    top level: the last run's, the Redis Cluster's (its figures printed after the single's)."""
    if "by_redis" in faults:
        return faults["by_redis"]
    return {"redis-cluster": {k: v for k, v in faults.items() if isinstance(v, dict)}}


def faults_table(results: Figures) -> str:
    lines = [
        "| Redis | fault | expected | delivered | missing | wrong | repeated requests |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for kind, faults in fault_runs(results["faults"]).items():
        for fault, figures in faults.items():
            lines.append(
                f"| {kind} | {fault} | {figures['expected']} | {figures['delivered']} | "
                f"{figures['missing']} | {figures['wrong']} | {figures['repeated_requests']} |"
            )
    return "\n".join(lines)


def differential_figure(results: Figures) -> str:
    """One line for `scripts/bench --differential N`'s result."""
    divergent = sum(max(1, len(group["divergent_cases"])) for group in results["divergences"])
    return (
        f"{results['cases']} generated cases through the live pipeline, {divergent} "
        f"divergences (seed {results['first_seed']}, {results['duration_s'] / 60:.0f} minutes)"
    )


def scale_tables(results: Figures) -> str:
    """`scripts/bench --scale`: a worker crash's takeover per session timeout, then the burst
    through 1, 2 and 4 workers with the cores each process used."""
    lines = [
        "| session timeout | takeover | timer lateness p50 / p99 / max (target p99 < 5 s) |",
        "| --- | --- | --- |",
    ]
    for crash in results["crash"]:
        lateness = (
            f"{_s(crash['timer_lateness_p50_s'])} / {_s(crash['timer_lateness_p99_s'])} / "
            f"{_s(crash['timer_lateness_max_s'])}"
        )
        verdict = "met" if crash["lateness_target_met"] else "**not met**"
        lines.append(
            f"| {crash['session_timeout_s']:g} s | {_s(crash['takeover_s'])} | "
            f"{lateness}, {verdict} ({_n(crash['timers'])} timers at "
            f"{_n(crash['timer_rate_per_s'])} /s) |"
        )
    lines += [
        "",
        "| workers | events/s | store bulk-CAS ceiling | ratio | cores: workers / FerretDB / "
        "Kafka / benchmark / all |",
        "| --- | --- | --- | --- | --- |",
    ]
    for run in results["scaling"]:
        cores = run["cores"]
        used = " / ".join(
            f"{cores.get(name, 0.0):.2f}" for name in ("workers", "mongo", "kafka", "benchmark")
        )
        lines.append(
            f"| {run['workers']} | {_n(run['events_per_s'])} | "
            f"{_n(run['store_bulk_cas_per_s'])} /s | {run['ratio_to_store']:.2f} | "
            f"{used} / {cores['all']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    runs = {mode: results for mode in MODES if (results := load(mode))}
    print(figures_table(runs))
    largest = list(runs)[-1]
    wave = runs[largest]["faults"]["wave_users"]
    print(f"\nFault suite at the `{largest}` size ({wave} users per wave):\n")
    print(faults_table(runs[largest]))
    differential = load("differential")
    if differential is not None:
        print(
            f"\n`scripts/bench --differential N [--seed S]`: {differential_figure(differential)}."
        )
    scale = load("scale")
    if scale is not None:
        print(f"\n`scripts/bench --scale` ({scale['mode']} size):\n\n{scale_tables(scale)}")


if __name__ == "__main__":
    main()
