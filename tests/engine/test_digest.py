"""A message step's `digest`: the named events since the step last sent to the user (or since
entering), counted and the latest listed, bounded in the user's state, and read back from old
documents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.authoring.files import load_journey, read_events
from app.engine import JourneyEngine, JourneyError, Send, UserEvent, UserState, load_journey_text
from app.engine.definitions import DIGEST_LATEST_MAX, Digest, MessageStep
from app.engine.digests import PROPERTIES_KEPT_BYTES
from app.engine.simulator import Simulator
from app.sender.templates import TemplateStore

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
# Every week: wait 7 days from signing up, summarise, then again a week later.
WEEKLY = """
id: j
version: 1
entry: {event: signed_up}
steps:
  week1: {type: delay, duration: 7d, next: summary1}
  summary1:
    type: message
    channel: push
    template: weekly_summary
    digest: {events: [lesson_completed, badge_earned], latest: LATEST}
    next: week2
  week2: {type: delay, duration: 7d, next: summary2}
  summary2:
    type: message
    channel: push
    template: weekly_summary
    digest: {events: [lesson_completed]}
"""


def event(name: str, at: datetime, user: str = "u", **properties: object) -> UserEvent:
    return UserEvent(f"{user}-{name}-{at:%m%d%H%M}", user, name, at, properties=dict(properties))


def digests(text: str, *events: UserEvent) -> tuple[dict[str, dict], UserState]:
    simulator = Simulator(JourneyEngine([load_journey_text(text)]))
    simulator.feed(events)
    simulator.finish(timedelta(days=30))
    sent = {
        item.effect.step_id: item.effect.variables["digest"]
        for item in simulator.effects
        if isinstance(item.effect, Send)
    }
    return sent, simulator.states["u"]


def test_each_send_gets_the_named_events_since_the_step_last_sent_or_since_entry() -> None:
    sent, _ = digests(
        WEEKLY.replace("LATEST", "2"),
        event("lesson_completed", T0 - timedelta(hours=1)),  # before entering: not counted
        event("signed_up", T0),
        event("lesson_completed", T0 + timedelta(days=1), title="Fractions"),
        event("opened_app", T0 + timedelta(days=2)),  # not named
        event("badge_earned", T0 + timedelta(days=3), title="Curious"),
        event("lesson_completed", T0 + timedelta(days=4), title="Decimals"),
        event("lesson_completed", T0 + timedelta(days=8), title="Percentages"),
    )
    assert sent["summary1"] == {
        "since": "2026-11-02T09:00:00Z",
        "counts": {"lesson_completed": 2, "badge_earned": 1},
        "total": 3,
        "latest": [  # newest first, 2 of 3
            {
                "name": "lesson_completed",
                "at": "2026-11-06T09:00:00Z",
                "properties": {"title": "Decimals"},
            },
            {
                "name": "badge_earned",
                "at": "2026-11-05T09:00:00Z",
                "properties": {"title": "Curious"},
            },
        ],
    }
    # Another step counts on its own: since entering, as it never sent.
    assert sent["summary2"]["since"] == "2026-11-02T09:00:00Z"
    assert sent["summary2"]["counts"] == {"lesson_completed": 3}
    assert len(sent["summary2"]["latest"]) == 3


def test_the_period_restarts_at_each_send_and_outlives_the_entry() -> None:
    simulator = Simulator(JourneyEngine([load_journey(ROOT / "examples/weekly-summary.yaml")]))
    simulator.feed(read_events(ROOT / "examples/weekly-summary.events.jsonl"))
    simulator.finish(timedelta(days=15))
    paula = [
        item.effect.variables["digest"]
        for item in simulator.effects
        if isinstance(item.effect, Send) and item.effect.user_id == "paula"
    ]
    assert [(d["since"], d["counts"], [e["at"] for e in d["latest"]]) for d in paula[:3]] == [
        ("2026-11-09T07:00:00Z", {"lesson_completed": 0, "badge_earned": 0}, []),
        (
            "2026-11-09T07:00:00Z",
            {"lesson_completed": 2, "badge_earned": 1},
            ["2026-11-12T18:00:00Z", "2026-11-11T17:30:00Z", "2026-11-10T17:00:00Z"],
        ),
        (
            "2026-11-16T07:00:00Z",
            {"lesson_completed": 1, "badge_earned": 0},
            ["2026-11-18T18:00:00Z"],
        ),
    ]


def test_the_weekly_summary_template_renders_the_digest() -> None:
    simulator = Simulator(JourneyEngine([load_journey(ROOT / "examples/weekly-summary.yaml")]))
    simulator.feed(read_events(ROOT / "examples/weekly-summary.events.jsonl"))
    simulator.finish(timedelta(days=8))
    second = [
        item.effect
        for item in simulator.effects
        if isinstance(item.effect, Send) and item.effect.user_id == "paula"
    ][1]
    rendered = TemplateStore(ROOT / "templates", "en").render(
        second.template_id, "en", second.variables
    )
    assert rendered.subject == "Your week: 3 activities since 2026-11-09"
    assert rendered.body.splitlines()[1:6] == [
        "badge earned: 1",
        "lesson completed: 2",
        "Latest:",
        "- 2026-11-12 18:00 lesson completed title=Decimals",
        "- 2026-11-11 17:30 badge earned title=Curious mind",
    ]


def test_the_state_keeps_at_most_latest_events_and_small_properties() -> None:
    many = [event("signed_up", T0)] + [
        event("lesson_completed", T0 + timedelta(minutes=i), n=i) for i in range(1, 60)
    ]
    big = event("badge_earned", T0 + timedelta(hours=2), blob="x" * PROPERTIES_KEPT_BYTES)
    sent, state = digests(WEEKLY.replace("LATEST", "3"), *many, big)
    record = state.digests["j"]["summary2"]  # summary1 sent and restarted; summary2 too
    assert record["latest"] == []
    assert sent["summary1"]["counts"] == {"lesson_completed": 59, "badge_earned": 1}
    assert [e["properties"] for e in sent["summary1"]["latest"]] == [{}, {"n": 59}, {"n": 58}]
    # While counting, the list never grows past its step's `latest`.
    engine = JourneyEngine([load_journey_text(WEEKLY.replace("LATEST", "3"))])
    state = UserState.new("u")
    for item in many:
        state = engine.apply(state, item, item.at).state
    assert len(state.digests["j"]["summary1"]["latest"]) == 3
    assert len(state.digests["j"]["summary2"]["latest"]) == 5  # the default


def test_a_document_round_trips_and_an_old_one_without_digests_loads() -> None:
    engine = JourneyEngine([load_journey_text(WEEKLY.replace("LATEST", "3"))])
    state = UserState.new("u")
    for item in (event("signed_up", T0), event("badge_earned", T0 + timedelta(hours=1), x=1)):
        state = engine.apply(state, item, item.at).state
    document = state.to_document()
    restored = UserState.from_document(document)
    assert restored.digests == state.digests
    naive = {  # as MongoDB returns datetimes without a tz-aware client
        **document,
        "digests": {
            "j": {
                step: {
                    **record,
                    "since": record["since"].replace(tzinfo=None),
                    "latest": [{**e, "at": e["at"].replace(tzinfo=None)} for e in record["latest"]],
                }
                for step, record in document["digests"]["j"].items()
            }
        },
    }
    assert UserState.from_document(naive).digests == state.digests
    old = {k: v for k, v in document.items() if k != "digests"}
    assert UserState.from_document(old).digests == {}
    step = load_journey_text(WEEKLY.replace("LATEST", "3")).steps["summary1"]
    assert isinstance(step, MessageStep) and step.digest == Digest(
        ("lesson_completed", "badge_earned"), 3
    )


@pytest.mark.parametrize(
    ("digest", "where", "expected"),
    [
        ("{events: lesson_completed}", "/steps/summary/digest/events", "a list of 1 to 20"),
        ("{events: []}", "/steps/summary/digest/events", "a list of 1 to 20"),
        ("{events: [a, a]}", "/steps/summary/digest/events/1", "each event named once"),
        ("{events: [a b]}", "/steps/summary/digest/events/0", "a name of letters"),
        (
            f"{{events: [a], latest: {DIGEST_LATEST_MAX + 1}}}",
            "/steps/summary/digest/latest",
            f"a whole number from 0 to {DIGEST_LATEST_MAX}",
        ),
        ("{events: [a], latest: 2.5}", "/steps/summary/digest/latest", "a whole number"),
        ("{event: [a]}", "/steps/summary/digest/events", "(found `event`: a misspelling?)"),
        ("{events: [a], lastest: 2}", "/steps/summary/digest/lastest", "did you mean `latest`?"),
        ("[a]", "/steps/summary/digest", "a mapping"),
    ],
)
def test_a_bad_digest_is_a_located_error(digest: str, where: str, expected: str) -> None:
    text = (
        "id: j\nversion: 1\nentry: {event: signed_up}\nsteps:\n"
        f"  summary: {{type: message, channel: email, template: t, digest: {digest}}}\n"
    )
    with pytest.raises(JourneyError) as raised:
        load_journey_text(text, "j.yaml")
    assert f"j.yaml:5: at {where}: found" in str(raised.value)
    assert expected in str(raised.value)
