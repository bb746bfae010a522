"""Inputs decode from their topic records in one place: the contracts' own examples decode to the
inputs they describe, and a record of the other kind is refused with a clear error."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.engine import ScheduledEntry, TimerFired, UserEvent
from app.topics import load_contract

TIMER, TICK = load_contract("timers").examples


def test_timer_and_scheduled_entry_records_decode_to_their_inputs() -> None:
    assert TimerFired.from_record(TIMER) == TimerFired(
        "u-42",
        "onboarding:1:u-42:20261102T091500Z:wait-1h",
        datetime(2026, 11, 2, 10, 15, tzinfo=UTC),
    )
    assert ScheduledEntry.from_record(TICK) == ScheduledEntry(
        "u-42", "weekly-summary", datetime(2026, 11, 9, 8, tzinfo=UTC)
    )


def test_a_record_of_the_other_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="expected a timers record of kind 'timer'"):
        TimerFired.from_record(TICK)
    with pytest.raises(ValueError, match="expected a timers record of kind 'scheduled_entry'"):
        ScheduledEntry.from_record(TIMER)


def test_user_events_decode_with_their_receipt_time() -> None:
    record = load_contract("user-events").examples[0]
    received = datetime(2026, 11, 2, 9, tzinfo=UTC)
    event = UserEvent.from_record(record, received_at=received)
    assert event.event_id == record["event_id"] and event.received_at == received
