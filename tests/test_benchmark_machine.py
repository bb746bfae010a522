"""What the benchmark records besides its figures: CPU per process, the servers' processes found
by port, the store's size on disk, the commit and machine; and the report on old and new results.
Local processes and files only (no server)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import Settings
from app.worker.metrics import STAGE_BUCKETS, STAGES, stage_bound, stage_bucket
from benchmarks.machine import (
    CpuMeter,
    WalPeak,
    cpu_seconds,
    database_size,
    endpoints,
    listening_pids,
    listening_sockets,
    provenance,
    server_pids,
    sqlite_dir,
)
from benchmarks.report import faults_table, figures_table
from benchmarks.run import fault_figures, stage_latencies


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A process whose command name has spaces and parentheses, and a `-sqlite-dir` argument."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; open('/proc/self/comm', 'w').write(sys.argv[1]); time.sleep(60)",
            "a) b (c",
            "-sqlite-dir",
            "/srv/ferretdb",
        ]
    )
    time.sleep(0.3)
    yield process
    process.kill()
    process.wait()


def test_cpu_seconds_are_this_process_cpu_time_in_seconds() -> None:
    before, clock = cpu_seconds(os.getpid()), time.process_time()
    while time.process_time() - clock < 0.3:
        pass
    used = cpu_seconds(os.getpid()) - before
    assert used == pytest.approx(time.process_time() - clock, abs=0.05)


def test_cpu_seconds_read_a_command_name_with_spaces_and_parentheses(sleeper) -> None:
    assert Path(f"/proc/{sleeper.pid}/comm").read_text().strip() == "a) b (c"
    assert 0 <= cpu_seconds(sleeper.pid) < 5
    assert cpu_seconds(os.getpid(), sleeper.pid) >= cpu_seconds(os.getpid())


def test_a_cpu_meter_gives_each_group_the_cpu_it_used_between_start_and_stop(sleeper) -> None:
    meter = CpuMeter({"me": [os.getpid()], "idle": [sleeper.pid], "remote": []})
    meter.start()
    clock = time.process_time()
    while time.process_time() - clock < 0.2:
        pass
    used = meter.stop()
    assert set(used) == {"me", "idle"}  # a group without a process is left out
    assert used["me"] >= 0.15 and used["idle"] < 0.05


@pytest.mark.parametrize(
    ("url", "found"),
    [
        ("mongodb://127.0.0.1:27017", [("127.0.0.1", 27017)]),
        (
            "mongodb://user:pw@db1:27018,db2/journeys?replicaSet=rs0",
            [("db1", 27018), ("db2", 27017)],
        ),
        (
            "redis+cluster://127.0.0.1:7001,127.0.0.1:7002/",
            [("127.0.0.1", 7001), ("127.0.0.1", 7002)],
        ),
        ("redis://localhost/0", [("localhost", 27017)]),
        ("127.0.0.1:9092,[::1]:9093", [("127.0.0.1", 9092), ("::1", 9093)]),
    ],
)
def test_endpoints_are_the_hosts_and_ports_a_url_names(url: str, found: list) -> None:
    assert endpoints(url, 27017) == found


def test_listening_sockets_are_read_from_a_proc_net_tcp_table() -> None:
    table = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
        "timeout inode\n"
        "   0: 0100007F:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        "
        "0 4242 1 0000000000000000 100 0 0 10 0\n"
        "   1: 0100007F:D2F0 0100007F:18EB 01 00000000:00000000 00:00000000 00000000     0        "
        "0 4343 1 0000000000000000 20 4 30 10 -1\n"
    )
    assert listening_sockets([table]) == {6379: 4242}  # the connected socket is not listening


@pytest.fixture
def listeners() -> Iterator[list[int]]:
    sockets = []
    for _ in range(2):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        sockets.append(sock)
    yield [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()


def test_the_process_listening_on_a_port_is_found(listeners: list[int]) -> None:
    assert listening_pids(listeners) == {port: os.getpid() for port in listeners}


def test_the_servers_are_the_local_processes_on_the_ports_of_their_urls(
    listeners: list[int],
) -> None:
    first, second = listeners
    settings = Settings(
        kafka_url=f"kafka://127.0.0.1:{first}",
        mongo_url="mongodb://db.example.com:27017",  # remote: no process here
        redis_url=f"redis+cluster://127.0.0.1:{first},localhost:{second}/",
    )
    assert server_pids(settings) == {"kafka": (os.getpid(),), "redis": (os.getpid(),) * 2}


@pytest.mark.parametrize(
    ("arguments", "folder"),
    [
        (["ferretdb", "-listen-addr", "127.0.0.1:27017", "-sqlite-dir", "/d"], Path("/d")),
        (["ferretdb", "--sqlite-dir=/e"], Path("/e")),
        (["ferretdb", "-sqlite-dir"], None),
        (["mongod", "--dbpath", "/f"], None),
    ],
)
def test_ferretdb_s_folder_comes_from_its_sqlite_dir_flag(arguments, folder) -> None:
    assert sqlite_dir(arguments) == folder


async def test_a_local_ferretdb_database_s_size_is_its_sqlite_file_and_its_log(
    tmp_path: Path,
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "-sqlite-dir", str(tmp_path)]
    )
    try:
        time.sleep(0.3)
        (tmp_path / "bench_1.sqlite").write_bytes(b"x" * 4096)
        (tmp_path / "bench_1.sqlite-wal").write_bytes(b"x" * 1000)
        (tmp_path / "other.sqlite").write_bytes(b"x" * 9999)
        size = await database_size(Settings(mongo_db="bench_1"), [process.pid])
        assert size == {"source": "sqlite files", "database": 4096, "wal": 1000, "total": 5096}
        wal = WalPeak.of([process.pid], "bench_1")
        watching = asyncio.create_task(wal.watch())
        await asyncio.sleep(0.1)
        (tmp_path / "bench_1.sqlite-wal").write_bytes(b"")  # truncated by a checkpoint
        await asyncio.sleep(1.2)
        watching.cancel()
        assert wal.peak == 1000
    finally:
        process.kill()
        process.wait()


def test_provenance_names_the_commit_and_whether_tracked_files_changed(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    def git(*args: str) -> str:
        command = ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args]
        result = subprocess.run(command, cwd=tmp_path, check=True, capture_output=True, text=True)
        return result.stdout.strip()

    git("init", "-q")
    (tmp_path / "a.txt").write_text("one")
    git("add", "a.txt")
    git("commit", "-q", "-m", "one")
    (tmp_path / "untracked.json").write_text("{}")  # a result the run wrote: not a change
    about = provenance(tmp_path)
    assert about["commit"] == git("rev-parse", "HEAD") and about["dirty"] is False
    assert about["machine"].endswith(f"Python {sys.version.split()[0]}")
    assert about["memory_gb"] > 0 and about["cpu"]
    (tmp_path / "a.txt").write_text("two")
    assert provenance(tmp_path)["dirty"] is True
    assert provenance(tmp_path_factory.mktemp("plain"))["commit"] == "unknown"


def _histograms(**samples: list[float]) -> dict[str, list[int]]:
    counts = {stage: [0] * STAGE_BUCKETS for stage in STAGES}
    for stage, values in samples.items():
        for value in values:
            counts[stage][stage_bucket(value)] += 1
    return counts


def test_stage_latencies_are_of_the_phase_alone_from_two_snapshots_of_the_histograms() -> None:
    before = _histograms(store=[5.0] * 100)  # a slow burst before the phase
    after = _histograms(store=[5.0] * 100 + [0.01] * 99 + [0.3], hold=[1.0] * 100)
    stages = stage_latencies(before, after, [0.002] * 99 + [0.05])
    assert stages["store"] == {
        "p50_s": stage_bound(stage_bucket(0.01)),
        "p99_s": stage_bound(stage_bucket(0.01)),
        "samples": 100,
    }
    assert stages["hold"]["p50_s"] == stage_bound(stage_bucket(1.0))
    assert stages["kafka"] == {"p50_s": 0.0, "p99_s": 0.0, "samples": 0}
    assert stages["send_to_consumer"] == {"p50_s": 0.002, "p99_s": 0.05, "samples": 100}


def test_the_report_renders_old_results_and_new_ones(tmp_path: Path) -> None:
    old = {
        "kafka_produce_consume_per_s": 1000.0,
        "e2e_latency_p50_s": 1.0,
        "e2e_latency_p99_s": 2.0,
        "e2e_paced_events_per_s": 100.0,
        "targets": {},
        "faults": {"passed": True, "wave_users": 40},
    }
    new = {
        **old,
        "targets": {
            "e2e_latency_p99_s": {"met": False},
            "cpu_ms_per_event_worker": {"met": True},
        },
        **{f"cpu_ms_per_event_{name}": 0.25 for name in ("worker", "mongo", "kafka")},
        "e2e_stages": {
            "store": {"p50_s": 0.02, "p99_s": 0.1, "samples": 10},
            "hold": {"p50_s": 0.9, "p99_s": 1.5, "samples": 10},
        },
        "store_database_mb": 12.0,
        "store_wal_mb": 0.0,
        "store_wal_peak_mb": 64.4,
        "commit": "0123456789abcdef",
        "dirty": True,
    }
    cells = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in figures_table({"old": old, "new": new}).splitlines()
    ]
    rows = {label: values for label, *values in cells}
    assert rows["event-to-dispatch latency p50 / p99 (target p99 <= 0.5 s)"] == [
        "1.00 s / 2.00 s at 100 events/s",
        "1.00 s / 2.00 s at 100 events/s, **not met**",
    ]
    cpu = next(v for k, v in rows.items() if k.startswith("CPU ms per event"))
    assert cpu == ["not measured in that run", "0.25 / 0.25 / 0.25 / - / -, met"]
    assert rows["latency by stage, p50 / p99 in seconds"][1] == (
        "store 0.020 / 0.100; **hold 0.900 / 1.500**"
    )
    store = next(v for k, v in rows.items() if k.startswith("store on disk"))
    assert store == ["not measured in that run", "12 + 0 MB (64 MB)"]
    assert rows["commit"] == ["not measured in that run", "0123456789ab with uncommitted changes"]


def test_the_fault_table_shows_each_redis_kinds_run_and_old_results_as_the_clusters() -> None:
    figures = {"expected": 3, "delivered": 2, "missing": 1, "wrong": 0, "repeated_requests": 0}
    new = {"faults": {"passed": False, "wave_users": 40, "by_redis": {
        "redis": {"restart mongo": figures},
        "redis-cluster": {"restart mongo": {**figures, "delivered": 3, "missing": 0}},
    }}}  # fmt: skip
    assert faults_table(new).splitlines()[2:] == [
        "| redis | restart mongo | 3 | 2 | 1 | 0 | 0 |",
        "| redis-cluster | restart mongo | 3 | 3 | 0 | 0 | 0 |",
    ]
    old = {"faults": {"passed": True, "wave_users": 40, "restart mongo": figures}}
    assert faults_table(old).splitlines()[2:] == [
        "| redis-cluster | restart mongo | 3 | 2 | 1 | 0 | 0 |"
    ]


def test_the_fault_figures_of_both_runs_are_read_even_after_pytests_progress_dot() -> None:
    figures = {"expected": 3, "delivered": 3, "missing": 0, "wrong": 0, "repeated_requests": 0}
    stdout = (
        f"fault suite [redis]: kill -9 worker: {figures}\n"
        f"fault suite [redis]: unexpected deliveries: 0\n"
        f".fault suite [redis-cluster]: kill -9 worker: {figures}\n"
    )
    assert fault_figures(stdout) == {
        "redis": {"kill -9 worker": figures},
        "redis-cluster": {"kill -9 worker": figures},
    }
