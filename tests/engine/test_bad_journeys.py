"""Hypothesis-generated malformed journey files: loading one either gives a journey the engine
can run or a JourneyError naming the file, the path inside it, what was found and what was
expected; never another exception."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from app.engine import JourneyEngine, UserEvent, UserState, load_journey_text
from app.engine.loader import JourneyError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
JOURNEYS = {path.name: yaml.safe_load(path.read_text()) for path in sorted(EXAMPLES.glob("*.yaml"))}
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from(["1h", "-3d", "25:00", "email", "fax", "welcome", "hello", "once", "99%"])
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=5,
)


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(node, dict):
        for key, child in node.items():
            found += paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found += paths(child, (*prefix, index))
    return found


@st.composite
def broken_journeys(draw: st.DrawFn) -> str:
    """An example journey with one to three nodes deleted or replaced by random values."""
    document = yaml.safe_load(yaml.safe_dump(JOURNEYS[draw(st.sampled_from(sorted(JOURNEYS)))]))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(paths(document)))
        if not where:
            document = draw(values)
            continue
        parent = document
        try:
            for part in where[:-1]:
                parent = parent[part]
            if draw(st.booleans()) and isinstance(parent, dict):
                del parent[where[-1]]
            else:
                parent[where[-1]] = draw(values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed this path
    return yaml.safe_dump(document)


texts = st.one_of(
    broken_journeys(),
    st.text(max_size=80),
    st.sampled_from(
        ["id: [", "steps: {a: {type: message", "\t- x", "&a [*a]", "!!python/object:os.system x"]
    ),
)


@settings(max_examples=500, deadline=None)
@given(text=texts)
def test_a_malformed_journey_file_loads_or_says_where_and_what_was_expected(text: str) -> None:
    try:
        journey = load_journey_text(text, "broken.yaml")
    except JourneyError as error:
        assert error.source == "broken.yaml"
        assert error.where.startswith("/")
        assert error.found and error.expected
        assert str(error).startswith("broken.yaml")
        return
    engine = JourneyEngine([journey])
    signed_up = UserEvent(
        event_id="e1",
        user_id="u1",
        name="signed_up",
        at=T0,
        attributes={"email": "a@x.test", "role": "teacher"},
    )
    engine.apply(UserState.new("u1"), signed_up, T0)
