"""Hypothesis-generated malformed stream records: none crashes the worker, each one either is a
valid input after all (and is applied) or comes back as a dead letter with a reason saying where
and what was expected, and the good events around them are all applied."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.authoring.files import load_journey
from app.engine import JourneyEngine, UserState
from app.topics import RecordError
from app.worker.processor import InputRecord, decode
from tests.worker.conftest import event

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
ENGINE = JourneyEngine(
    [load_journey(path) for path in sorted(EXAMPLES.glob("*.yaml")) if "weekly" not in path.name]
)
# Every error the worker turns into a dead letter; anything else would escape a batch.
REJECTED = (RecordError, ValueError, KeyError, LookupError)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
timestamps = st.one_of(
    st.datetimes().map(datetime.isoformat),  # no offset
    st.datetimes(timezones=st.timezones()).map(datetime.isoformat),
    st.text(max_size=30),
)
FIELDS = ("event_id", "user_id", "name", "at", "properties", "attributes", "subscriptions",
          "timezone", "locale", "unknown")  # fmt: skip


@st.composite
def malformed_events(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed event for a user of its own with one to three fields broken."""
    record = {
        "event_id": f"bad-{uuid.uuid4().hex}",
        "user_id": f"bad-{uuid.uuid4().hex[:12]}",
        "name": "signed_up",
        "at": T0.isoformat(),
        "attributes": {"email": "bad@x.test", "role": "teacher"},
        "timezone": "Europe/Paris",
    }
    for field in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3, unique=True)):
        if draw(st.booleans()):
            record.pop(field, None)
        elif field == "at":
            record[field] = draw(timestamps)
        elif field == "timezone":
            record[field] = draw(st.text(max_size=40) | st.timezone_keys())
        else:
            record[field] = draw(json_values)
    return record


raw_values = st.one_of(
    st.binary(max_size=64),
    json_values.map(lambda value: json.dumps(value).encode()),  # orjson refuses ints > 64 bits
    malformed_events().map(lambda value: json.dumps(value).encode()),
)


@settings(max_examples=400, deadline=None)
@given(raw=raw_values)
def test_a_malformed_record_is_an_input_or_a_clear_rejection(raw: bytes) -> None:
    """Decoding, then applying to a new user, fails only with the errors the worker dead-letters."""
    record = InputRecord("user-events", 0, 0, None, raw)
    try:
        engine_input = decode(record, 64 * 1024)
        ENGINE.apply(UserState.new(engine_input.user_id), engine_input, T0)
    except RecordError as error:
        assert error.where.startswith("/") and error.what and error.expected
    except REJECTED as error:
        assert str(error)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(bad=st.lists(raw_values, min_size=1, max_size=6), seed=st.integers(0, 2**16))
async def test_malformed_records_never_cost_a_good_event(processor, bad, seed) -> None:
    good_users = [f"good-{uuid.uuid4().hex[:12]}" for _ in range(3)]
    good = [
        orjson.dumps(
            event(
                f"good-{user}",
                user,
                "signed_up",
                T0,
                attributes={"email": f"{user}@x.test", "first_name": "Ada", "role": "teacher"},
            )
        )
        for user in good_users
    ]
    values = [*bad, *good]
    order = sorted(range(len(values)), key=lambda i: hash((seed, i)))
    batch = [
        InputRecord("user-events", 0, offset, None, values[i]) for offset, i in enumerate(order)
    ]
    bad_offsets = {offset for offset, i in enumerate(order) if i < len(bad)}
    pending_before = await processor.buffer.pending()

    letters = await processor.process(batch, T0 + timedelta(minutes=1))

    for letter in letters:
        assert letter.offset in bad_offsets
        assert letter.reason and letter.original == batch[letter.offset].value
    dead = {letter.offset for letter in letters}
    for offset in bad_offsets - dead:  # it was a valid input after all: it must have been applied
        user_id = decode(batch[offset], 64 * 1024).user_id
        stored = (await processor.store.load_many([user_id]))[user_id]
        assert stored.applied("user-events", 0, offset)
    stored = await processor.store.load_many(good_users)
    for user in good_users:
        assert stored[user].state.attributes["first_name"] == "Ada"
        assert list(stored[user].state.received) == ["welcome"]
    assert await processor.buffer.pending() >= pending_before + len(good_users)
