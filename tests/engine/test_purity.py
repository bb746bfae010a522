"""The functional core stays pure, checked: no module under app/engine imports an I/O library,
opens a file, reads the clock or draws unseeded random numbers. Files and servers belong to the
shells (app/authoring, app/worker, app/api)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ENGINE_DIR = Path(__file__).resolve().parents[2] / "app" / "engine"
IO_MODULES = {
    "aiohttp",
    "aiokafka",
    "bson",
    "click",
    "faust",
    "httpx",
    "motor",
    "os",
    "pathlib",
    "pymongo",
    "redis",
    "requests",
    "socket",
    "subprocess",
}
CLOCK_MODULES = {"time"}  # time.time, time.monotonic and the rest
RANDOM_MODULES = {"random", "secrets", "uuid"}
CLOCK_CALLS = {("datetime", "now"), ("datetime", "utcnow"), ("date", "today")}
IO_BUILTINS = {"open", "input", "print"}


def impurities(source: str) -> list[str]:
    """What in `source` is not pure, one line each."""
    found = []
    for node in ast.walk(ast.parse(source)):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            modules = [node.module or ""]
        for module in modules:
            root = module.split(".")[0]
            if root in IO_MODULES | CLOCK_MODULES | RANDOM_MODULES:
                found.append(f"line {node.lineno}: imports {module}")
        if isinstance(node, ast.Attribute):
            owner = node.value
            name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", None)
            if (name, node.attr) in CLOCK_CALLS:
                found.append(f"line {node.lineno}: reads the clock ({name}.{node.attr})")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in IO_BUILTINS
        ):
            found.append(f"line {node.lineno}: calls {node.func.id}()")
    return found


@pytest.mark.parametrize(
    "path", sorted(ENGINE_DIR.rglob("*.py")), ids=lambda p: str(p.relative_to(ENGINE_DIR))
)
def test_engine_module_is_pure(path: Path) -> None:
    assert impurities(path.read_text()) == []


@pytest.mark.parametrize(
    ("source", "what"),
    [
        ("import redis.asyncio as aioredis", "imports redis.asyncio"),
        ("from pathlib import Path", "imports pathlib"),
        ("import os", "imports os"),
        ("from click import command", "imports click"),
        ("import time\nx = time.monotonic()", "imports time"),
        ("from datetime import datetime\nx = datetime.now()", "reads the clock (datetime.now)"),
        ("import datetime\nx = datetime.datetime.utcnow()", "reads the clock (datetime.utcnow)"),
        ("from datetime import date\nx = date.today()", "reads the clock (date.today)"),
        ("import random\nx = random.random()", "imports random"),
        ("text = open('journey.yaml').read()", "calls open()"),
    ],
)
def test_each_kind_of_impurity_is_caught(source: str, what: str) -> None:
    assert any(what in line for line in impurities(source))


def test_pure_code_passes() -> None:
    source = "from datetime import UTC, datetime, time\nx = datetime(2026, 1, 1, tzinfo=UTC)\n"
    assert impurities(source) == []
