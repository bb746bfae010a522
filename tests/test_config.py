"""The settings module is the one place the app reads the environment, and the README's
configuration table names exactly the variables it reads."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path
from typing import get_type_hints

import pytest

from app import config
from app.config import ApiSettings, SenderSettings, Settings, WorkerSettings
from app.topics import contracts_dir

ROOT = Path(__file__).resolve().parents[1]
CONFIG = Path(config.__file__)
SECTIONS = (Settings, WorkerSettings, SenderSettings, ApiSettings)


def config_variables() -> set[str]:
    """The first argument of every `env(...)` call in app/config.py."""
    names = set()
    for node in ast.walk(ast.parse(CONFIG.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "env":
            name = node.args[0]
            assert isinstance(name, ast.Constant), f"line {node.lineno}: a literal name"
            names.add(name.value)
    return names


def readme_variables() -> set[str]:
    """The variables in backticks in the first column of the README's configuration table."""
    section = ROOT.joinpath("README.md").read_text().split("\n## Configuration\n")[1]
    section = section.split("\n## ")[0]
    names = set()
    for line in section.splitlines():
        if line.startswith("|"):
            first_column = line.split("|")[1]
            names.update(re.findall(r"`([A-Z][A-Z0-9_]*)`", first_column))
    return names


def test_the_readme_table_names_exactly_the_variables_the_settings_read() -> None:
    in_code, in_readme = config_variables(), readme_variables()
    assert len(in_code) > 40
    assert in_code - in_readme == set(), "read by app/config.py but missing from the README"
    assert in_readme - in_code == set(), "in the README but not read by app/config.py"


def test_only_env_reads_the_environment() -> None:
    """Every variable goes through `env`, so the list above is complete."""
    module = ast.parse(CONFIG.read_text())
    env = next(
        node for node in module.body if isinstance(node, ast.FunctionDef) and node.name == "env"
    )
    inside = {id(node) for node in ast.walk(env)}
    for node in ast.walk(module):
        if isinstance(node, ast.Attribute | ast.Name):
            name = node.attr if isinstance(node, ast.Attribute) else node.id
            if name in {"environ", "getenv", "environb", "getenvb"}:
                assert id(node) in inside, f"app/config.py line {node.lineno} reads the environment"
    for path in ROOT.joinpath("app").rglob("*.py"):
        if path != CONFIG:
            assert not re.search(r"os\.environ|getenv", path.read_text()), f"{path} reads it"


@pytest.mark.parametrize("section", SECTIONS, ids=lambda section: section.__name__)
def test_every_default_has_its_fields_type(section: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """The variable is parsed as the default's type, so `30` for a float field would reject
    `2.5`."""
    for variable in config_variables():
        monkeypatch.delenv(variable, raising=False)
    built, types = section(), get_type_hints(section)
    for setting in dataclasses.fields(section):
        assert isinstance(getattr(built, setting.name), types[setting.name]), setting.name


def test_variables_are_parsed_and_keywords_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIMER_LEASE_SECONDS", "2.5")
    monkeypatch.setenv("API_PORT", "9000")
    monkeypatch.setenv("TEMPLATES_DIR", "/srv/templates")
    monkeypatch.delenv("MONGO_BULK_OPS", raising=False)
    assert WorkerSettings().timer_lease_seconds == 2.5
    assert ApiSettings().port == 9000
    assert ApiSettings(port=0).port == 0
    assert SenderSettings().templates_dir == Path("/srv/templates")
    assert Settings().mongo_bulk_ops == 50
    monkeypatch.setenv("API_PORT", "eighty")
    with pytest.raises(ValueError, match="eighty"):
        ApiSettings()


def test_a_channel_without_its_own_rate_has_sender_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("SENDER_RATE_EMAIL", "SENDER_RATE_PUSH", "SENDER_RATE_WEBHOOK"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("SENDER_RATE", "30")
    monkeypatch.setenv("SENDER_RATE_SMS", "1.5")
    rates = SenderSettings().channel_rates()
    assert rates == {"email": 30.0, "push": 30.0, "sms": 1.5, "webhook": 30.0}
    assert SenderSettings(webhook_rate=4.0).channel_rates()["webhook"] == 4.0


def test_the_topic_contracts_come_from_the_repo_unless_configured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("JOURNEYS_TOPICS_DIR", raising=False)
    assert contracts_dir() == ROOT / "topics"
    monkeypatch.setenv("JOURNEYS_TOPICS_DIR", "")
    assert contracts_dir() == ROOT / "topics"
    monkeypatch.setenv("JOURNEYS_TOPICS_DIR", str(tmp_path))
    assert contracts_dir() == tmp_path
