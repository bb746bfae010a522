"""Event times from another era: an event counts only if its time lies within
[received - max past, received + max future]; the engine refuses it otherwise, identically in the
simulator and the workers. An event without a receipt time counts as received at its own time."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from app.engine import (
    EventTimeError,
    EventTimePolicy,
    JourneyEngine,
    Send,
    UserEvent,
    UserState,
    load_journey_text,
)
from app.engine.simulator import Simulator

RECEIVED = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
JOURNEY = load_journey_text(
    "id: j\nversion: 1\nentry: {event: signed_up}\nsteps:\n"
    "  wait: {type: delay, duration: 1d, next: hello}\n"
    "  hello: {type: message, channel: email, template: hello}\n"
)
ENGINE = JourneyEngine([JOURNEY])


def signed_up(at: datetime, received_at: datetime | None = RECEIVED) -> UserEvent:
    return UserEvent("e-1", "user-secret", "signed_up", at, received_at=received_at)


@pytest.mark.parametrize(
    ("at", "when"),
    [
        (datetime(1970, 1, 1, tzinfo=UTC), "before"),
        (datetime(2999, 1, 1, tzinfo=UTC), "after"),
        (RECEIVED - timedelta(days=7, milliseconds=1), "before"),
        (RECEIVED + timedelta(minutes=5, milliseconds=1), "after"),
    ],
)
def test_an_event_outside_the_accepted_skew_is_refused_with_the_reason(at, when) -> None:
    with pytest.raises(EventTimeError) as caught:
        ENGINE.apply(UserState.new("user-secret"), signed_up(at), RECEIVED)
    reason = str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert at.isoformat().replace("+00:00", "Z")[:19] in reason
    assert "2026-11-02T09:00:00Z" in reason and f" {when} " in reason
    assert "1w before" in reason and "5m after" in reason
    assert "EVENT_MAX_PAST_SECONDS" in reason and "EVENT_MAX_FUTURE_SECONDS" in reason
    assert "user-secret" not in reason and "e-1" not in reason


@pytest.mark.parametrize(
    "at", [RECEIVED - timedelta(days=7), RECEIVED, RECEIVED + timedelta(minutes=5)]
)
def test_an_event_within_the_skew_its_end_points_included_is_accepted(at) -> None:
    transition = ENGINE.apply(UserState.new("user-secret"), signed_up(at), RECEIVED)
    assert transition.state.journeys["j"]["entered"] == 1


def test_a_future_event_runs_at_its_receipt_time() -> None:
    event = signed_up(RECEIVED + timedelta(minutes=3))
    (timer,) = ENGINE.apply(UserState.new("user-secret"), event, RECEIVED + HOUR).state.timers
    assert timer.due_at == RECEIVED + timedelta(days=1)


def test_the_policy_is_a_constructor_parameter() -> None:
    strict = JourneyEngine([JOURNEY], event_time=EventTimePolicy(timedelta(hours=1), timedelta()))
    with pytest.raises(EventTimeError, match="1h before"):
        strict.apply(UserState.new("user-secret"), signed_up(RECEIVED - 2 * HOUR), RECEIVED)
    assert EventTimePolicy() == EventTimePolicy(timedelta(days=7), timedelta(minutes=5))


def test_without_a_receipt_time_an_event_counts_as_received_at_its_own_time() -> None:
    old = signed_up(datetime(1970, 1, 1, tzinfo=UTC), received_at=None)
    transition = ENGINE.apply(UserState.new("user-secret"), old, RECEIVED)
    assert transition.state.journeys["j"]["entered"] == 1


def test_the_simulator_records_refused_events_and_goes_on() -> None:
    simulator = Simulator(ENGINE)
    good = signed_up(RECEIVED - HOUR)
    bad = dataclasses.replace(
        good, event_id="e-2", user_id="other", at=datetime(1970, 1, 1, tzinfo=UTC)
    )
    simulator.feed([bad, good])
    simulator.finish()
    assert [item.effect.user_id for item in simulator.effects if isinstance(item.effect, Send)] == [
        "user-secret"
    ]
    assert [
        (event.event_id, "EVENT_MAX_PAST_SECONDS" in why) for event, why in simulator.refused
    ] == [("e-2", True)]
