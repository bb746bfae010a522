"""Journey, rules and event files from disk, parsed by the engine's text loaders."""

from __future__ import annotations

from pathlib import Path

from app.engine import Journey, Rules, UserEvent, load_journey_text, load_simulation_rules_text
from app.topics import read_jsonl


def load_journey(path: str | Path) -> Journey:
    return load_journey_text(Path(path).read_text(), str(path))


def load_rules(path: str | Path) -> Rules:
    """Rules for every journey, for the simulator (either form: see load_simulation_rules_text)."""
    return load_simulation_rules_text(Path(path).read_text(), str(path))


def read_events(path: str | Path) -> list[UserEvent]:
    """User events, one JSON record a line valid against topics/user-events.json; RecordError
    names the line and what is wrong with it."""
    return [UserEvent.from_record(record) for record in read_jsonl("user-events", Path(path))]
