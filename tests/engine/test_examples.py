"""Every example simulates to its expected timeline (the one in examples/README.md)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from app.authoring.files import load_journey
from app.engine import JourneyEngine, JourneyError, Send, UserEvent, load_journey_text
from app.engine.simulator import Simulator
from app.topics import read_jsonl

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def sends(name: str, days: int = 30) -> list[tuple[str, str, str, str]]:
    simulator = Simulator(JourneyEngine([load_journey(EXAMPLES / f"{name}.yaml")]))
    events = read_jsonl("user-events", EXAMPLES / f"{name}.events.jsonl")
    simulator.feed(UserEvent.from_record(e) for e in events)
    simulator.finish(timedelta(days=days))
    sends = [item for item in simulator.effects if isinstance(item.effect, Send)]
    return [
        (f"{item.at:%m-%d %H:%M}", item.effect.user_id, item.effect.step_id, item.effect.channel)
        for item in sorted(sends, key=lambda item: item.at)  # users' effects interleave by time
    ]


def test_base_case() -> None:
    assert sends("base-case") == [
        ("11-02 10:30", "bo", "first", "email"),
        ("11-02 11:00", "ada", "first", "email"),
        ("11-03 11:00", "ada", "second", "email"),  # bo invited parents: the filter said no
    ]  # cy added a class 6 hours after signing up: outside the 4-hour window


def test_appboy_branching_first_eligible_path_wins() -> None:
    assert sends("branching") == [
        ("11-03 09:00", "vera", "vip_offer", "email"),
        ("11-04 09:00", "bruno", "browse_reminder", "push"),
        ("11-05 09:00", "gus", "generic_offer", "email"),
    ]


def test_classdojo_activation_tree() -> None:
    assert sends("classdojo-activation") == [
        ("11-02 09:00", "tess", "welcome", "email"),
        ("11-02 09:00", "theo", "welcome", "email"),
        ("11-02 09:00", "tara", "welcome", "email"),
        ("11-02 10:00", "tara", "add_class", "email"),  # due together: fired in timer-id order
        ("11-02 10:00", "tess", "add_class", "email"),
        ("11-03 10:00", "tara", "reminder_1", "push"),
        ("11-03 10:00", "tess", "reminder_1", "push"),
        ("11-04 10:00", "tess", "reminder_2", "push"),
        ("11-05 10:00", "tess", "reminder_3", "push"),
    ]  # theo had a class with students within the hour; pam is a parent, not in the audience


def test_abandoned_cart() -> None:
    assert sends("abandoned-cart") == [
        ("11-02 13:00", "omar", "remind", "push"),
        ("11-03 07:00", "nina", "remind", "push"),  # 21:30 UTC is quiet in Madrid until 08:00
    ]  # ines bought within the hour


def test_weekly_summary_in_each_time_zone() -> None:
    assert sends("weekly-summary", days=5) == [
        ("11-09 07:00", "paula", "summary", "email"),  # 08:00 in Paris
        ("11-09 13:00", "pete", "summary", "email"),  # 08:00 in New York
        ("11-16 07:00", "paula", "summary", "email"),
        ("11-23 07:00", "paula", "summary", "email"),
    ]  # pete unsubscribed from email on 11-12; tom is a teacher


def test_opened_the_welcome_email_within_2_days() -> None:
    assert sends("welcome-opened") == [
        ("11-02 09:00", "ada", "welcome", "email"),
        ("11-02 09:00", "bo", "welcome", "email"),
        ("11-02 09:00", "cy", "welcome", "email"),
        ("11-03 08:00", "ada", "add_class", "email"),  # opened the welcome email the next day
        ("11-04 09:00", "cy", "nudge", "push"),  # opened it after the 2 days (timer-id order)
        ("11-04 09:00", "bo", "nudge", "push"),  # opened another email, not this one
    ]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_example_has_events_that_validate(path: Path) -> None:
    assert load_journey(path).id
    assert read_jsonl("user-events", path.with_suffix(".events.jsonl"))


def test_a_wait_for_message_names_a_message_step() -> None:
    text = (
        (EXAMPLES / "welcome-opened.yaml")
        .read_text()
        .replace("message: welcome", "message: opened")
    )
    with pytest.raises(JourneyError) as caught:
        load_journey_text(text, "welcome-opened.yaml")
    assert "steps.opened.message" in str(caught.value) or "message" in str(caught.value.where)
    assert "the id of a message step: welcome, add_class, nudge" in str(caught.value)
