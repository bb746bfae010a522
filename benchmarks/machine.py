"""What a benchmark result needs besides its figures: the CPU each process used (from
/proc/<pid>/stat), the local servers' processes (found by the ports they listen on), the store's
size on disk, and the commit and machine the run was on."""

from __future__ import annotations

import asyncio
import os
import platform
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from app.config import Settings
from app.store.mongo import close_client, new_client

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
TCP_LISTEN = "0A"


def cpu_seconds(*pids: int) -> float:
    """User plus system CPU time of the processes so far (fields 14 and 15 of /proc/<pid>/stat;
    the command name in field 2 may hold spaces and parentheses, so fields count from its end)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


class CpuMeter:
    """CPU seconds each named group of processes used between `start` and `stop`."""

    def __init__(self, pids: Mapping[str, Iterable[int]]) -> None:
        self.pids = {name: tuple(group) for name, group in pids.items() if group}
        self._before: dict[str, float] = {}

    def start(self) -> None:
        self._before = {name: cpu_seconds(*group) for name, group in self.pids.items()}

    def stop(self) -> dict[str, float]:
        return {name: cpu_seconds(*group) - self._before[name] for name, group in self.pids.items()}


def endpoints(url: str, default_port: int) -> list[tuple[str, int]]:
    """(host, port) of each server a URL names: `scheme://[user@]h1:p1,h2:p2/...`, or a bare
    `h1:p1,h2:p2` list as Kafka's bootstrap servers are given."""
    hosts = url.split("://", 1)[-1].split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]
    found = []
    for each in hosts.split(","):
        if each.startswith("["):  # [IPv6]:port
            host, _, rest = each[1:].partition("]")
            port = rest.removeprefix(":")
        else:
            host, _, port = each.partition(":")
        found.append((host, int(port) if port else default_port))
    return found


def listening_sockets(tables: Iterable[str]) -> dict[int, int]:
    """Port -> socket inode of every listening TCP socket in /proc/net/tcp-style tables."""
    found: dict[int, int] = {}
    for table in tables:
        for line in table.splitlines()[1:]:
            fields = line.split()
            if len(fields) > 9 and fields[3] == TCP_LISTEN:
                found.setdefault(int(fields[1].rsplit(":", 1)[1], 16), int(fields[9]))
    return found


def listening_pids(ports: Iterable[int]) -> dict[int, int]:
    """Port -> PID of the local processes listening on these TCP ports (those this user may
    look into). By port, not by command line: the servers may have been started from another
    checkout, and other processes may name them (a `tail` of a server's log)."""
    tables = [Path(f"/proc/net/{name}").read_text() for name in ("tcp", "tcp6")]
    sockets = listening_sockets(tables)
    wanted = {f"socket:[{sockets[port]}]": port for port in ports if port in sockets}
    found: dict[int, int] = {}
    for process in Path("/proc").iterdir():
        if not wanted or not process.name.isdigit():
            continue
        try:
            descriptors = list((process / "fd").iterdir())
        except OSError:
            continue  # gone meanwhile, or not ours to look into
        for descriptor in descriptors:
            try:
                link = os.readlink(descriptor)
            except OSError:
                continue  # closed meanwhile (the listing's own descriptor, for one)
            if link in wanted:
                found[wanted.pop(link)] = int(process.name)
    return found


def server_pids(settings: Settings) -> dict[str, tuple[int, ...]]:
    """The processes of the local servers the settings point at: Kafka, the MongoDB-compatible
    store and Redis (every node of a Redis Cluster); a remote server has none here."""
    servers = {
        "kafka": endpoints(settings.kafka_bootstrap, 9092),
        "mongo": endpoints(settings.mongo_url, 27017),
        "redis": endpoints(settings.redis_url, 6379),
    }
    ports = {port for nodes in servers.values() for host, port in nodes if host in LOOPBACK}
    pids = listening_pids(ports)
    found = {
        name: tuple(pids[port] for host, port in nodes if host in LOOPBACK and port in pids)
        for name, nodes in servers.items()
    }
    return {name: group for name, group in found.items() if group}


def sqlite_dir(arguments: list[str]) -> Path | None:
    """The folder of FerretDB's SQLite databases, from its `-sqlite-dir` flag as
    scripts/services gives it (or `--sqlite-dir=...`); None for another store."""
    for i, argument in enumerate(arguments):
        name, equals, value = argument.lstrip("-").partition("=")
        if name == "sqlite-dir" and (equals or i + 1 < len(arguments)):
            return Path(value if equals else arguments[i + 1])
    return None


def ferretdb_dir(mongo_pids: Iterable[int]) -> Path | None:
    """Where the local FerretDB among these processes keeps its databases, if one is."""
    for pid in mongo_pids:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        if (folder := sqlite_dir(arguments)) is not None:
            return folder
    return None


def sqlite_sizes(folder: Path, database: str) -> dict[str, int]:
    """Bytes on disk of one FerretDB database: its SQLite file and its write-ahead log."""

    def size(path: Path) -> int:
        return path.stat().st_size if path.exists() else 0

    return {
        "database": size(folder / f"{database}.sqlite"),
        "wal": size(folder / f"{database}.sqlite-wal"),
    }


class WalPeak:
    """The largest size a local FerretDB database's write-ahead log reached, looked at every
    second while `watch` runs (0 for another store)."""

    def __init__(self, folder: Path | None, database: str) -> None:
        self.folder = folder
        self.database = database
        self.peak = 0

    @classmethod
    def of(cls, mongo_pids: Iterable[int], database: str) -> WalPeak:
        return cls(ferretdb_dir(mongo_pids), database)

    async def watch(self) -> None:
        while self.folder is not None:
            self.peak = max(self.peak, sqlite_sizes(self.folder, self.database)["wal"])
            await asyncio.sleep(1)


async def database_size(settings: Settings, mongo_pids: Iterable[int]) -> dict[str, Any]:
    """The store's size at the end of a run: a local FerretDB's files on disk (its log
    included), else what `dbStats` says (data and indexes)."""
    folder = ferretdb_dir(mongo_pids)
    if folder is not None:
        sizes = sqlite_sizes(folder, settings.mongo_db)
        return {"source": "sqlite files", **sizes, "total": sum(sizes.values())}
    client = new_client(settings)
    try:
        stats = await client[settings.mongo_db].command("dbStats")
    except Exception as error:  # a store without dbStats, or a user not allowed to run it
        return {"source": f"dbStats failed: {type(error).__name__}"}
    finally:
        await close_client(client)
    return {
        "source": "dbStats",
        "database": int(stats.get("storageSize", 0)),
        "indexes": int(stats.get("indexSize", 0)),
        "total": int(stats.get("storageSize", 0)) + int(stats.get("indexSize", 0)),
    }


def provenance(root: Path) -> dict[str, Any]:
    """The commit the run is on (and whether the tree had changes) and the machine."""

    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else ""

    cpus = [
        line.split(":", 1)[1].strip()
        for line in Path("/proc/cpuinfo").read_text().splitlines()
        if line.startswith("model name")
    ]
    memory = next(
        line.split()[1]
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    return {
        "commit": git("rev-parse", "HEAD") or "unknown",
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "machine": (
            f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        ),
        "cpu": cpus[0] if cpus else platform.processor(),
        "memory_gb": round(int(memory) / 2**20, 1),
        "kernel": platform.release(),
    }
