"""docker/ for users who have Docker, checked on machines that have none: the compose file through
compose-go (the loader `docker compose config` runs), the Dockerfile's sources against the repo."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TOOL_SOURCE = ROOT / "scripts" / "compose-config"


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


def test_compose_file_passes_compose_config() -> None:
    result = subprocess.run(
        [str(compose_config_binary()), str(ROOT / "docker" / "compose.yaml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    project = yaml.safe_load(result.stdout)
    assert set(project["services"]) >= {"kafka", "mongo", "redis", "worker", "sender"}
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
