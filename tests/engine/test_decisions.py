"""Several decision points (paths, split) in one entry: each decision is taken once, by its own
step, and every later send carries the claims of all decisions taken so far."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.engine import JourneyEngine, Send, TimerFired, UserEvent, UserState, load_journey_text
from app.engine.simulator import Simulator
from app.engine.state import LEGACY_DECISION, EntryState

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
HEAD = "id: j\nversion: 1\nentry: {event: signed_up}\nsteps:\n"
SPLIT_THEN_SPLIT = HEAD + (
    "  first:\n    type: split\n    branches:\n"
    "      - {id: a, percent: 50, next: hello}\n"
    "      - {id: b, percent: 50, next: hello}\n"
    "  hello: {type: message, channel: email, template: hello, next: wait}\n"
    "  wait: {type: delay, duration: 1h, next: second}\n"
    "  second:\n    type: split\n    branches:\n"
    "      - {id: x, percent: 50, next: bye}\n"
    "      - {id: y, percent: 50, next: bye}\n"
    "  bye: {type: message, channel: email, template: bye}\n"
)


def sends(text: str, *events: UserEvent) -> list[Send]:
    simulator = Simulator(JourneyEngine([load_journey_text(text)]))
    simulator.feed(events)
    simulator.finish(timedelta(days=10))
    return [item.effect for item in simulator.effects if isinstance(item.effect, Send)]


def signed_up(user: str, **extra: object) -> UserEvent:
    return UserEvent(f"{user}-signup", user, "signed_up", T0, **extra)  # type: ignore[arg-type]


def test_paths_after_paths_takes_the_second_decision_too() -> None:
    text = HEAD + (
        "  first:\n    type: paths\n    paths:\n"
        "      - {id: soon, delay: 1h, next: hello}\n"
        "  hello: {type: message, channel: email, template: hello, next: second}\n"
        "  second:\n    type: paths\n    paths:\n"
        "      - {id: pro, delay: 1h, if: {attribute: plan, equals: pro}, next: pro_msg}\n"
        "      - {id: everyone, delay: 2h, next: bye}\n"
        "  pro_msg: {type: message, channel: email, template: pro}\n"
        "  bye: {type: message, channel: email, template: bye}\n"
    )
    sent = sends(text, signed_up("u"))
    assert [(s.step_id, s.send_at - T0) for s in sent] == [
        ("hello", timedelta(hours=1)),
        ("bye", timedelta(hours=3)),
    ]
    lock = f"j:u:{sent[1].entry_id}"
    assert sent[1].branches == ((f"{lock}:first", "soon"), (f"{lock}:second", "everyone"))


def test_split_then_paths_takes_the_paths_decision() -> None:
    text = HEAD + (
        "  ab:\n    type: split\n    branches:\n"
        "      - {id: a, percent: 50, next: choose}\n"
        "      - {id: b, percent: 50, next: choose}\n"
        "  choose:\n    type: paths\n    paths:\n"
        "      - {id: everyone, delay: 1d, next: bye}\n"
        "  bye: {type: message, channel: email, template: bye}\n"
    )
    sent = sends(text, *(signed_up(f"u{i}") for i in range(20)))
    assert len(sent) == 20  # every user, whichever split branch
    assert {s.branches[0][1] for s in sent} == {"a", "b"}
    assert all(s.branches[1] == (f"j:{s.user_id}:{s.entry_id}:choose", "everyone") for s in sent)


def test_split_then_split_sends_carry_both_branches() -> None:
    sent = sends(SPLIT_THEN_SPLIT, *(signed_up(f"u{i}") for i in range(20)))
    hello = {s.user_id: s for s in sent if s.step_id == "hello"}
    bye = {s.user_id: s for s in sent if s.step_id == "bye"}
    assert len(hello) == len(bye) == 20
    for user, first in hello.items():
        second = bye[user]
        lock = f"j:{first.user_id}:{first.entry_id}"
        assert first.branches == ((f"{lock}:first", first.branches[0][1]),)
        assert second.branches[0] == first.branches[0]
        assert second.branches[1][0] == f"{lock}:second"
    assert {s.branches[1][1] for s in bye.values()} == {"x", "y"}


def test_the_simulators_records_list_every_branch() -> None:
    simulator = Simulator(JourneyEngine([load_journey_text(SPLIT_THEN_SPLIT)]))
    simulator.feed([signed_up("u")])
    simulator.finish()
    records = [item.to_record() for item in simulator.effects if isinstance(item.effect, Send)]
    assert [len(r["branches"]) for r in records] == [1, 2]  # type: ignore[arg-type]
    assert records[1]["branches"][0][0].endswith(":first")  # type: ignore[index]
    assert "branch" not in records[0]
    send = next(item.effect for item in simulator.effects if isinstance(item.effect, Send))
    assert send.to_record()["branches"] == [list(pair) for pair in send.branches]


def test_a_document_with_a_single_winner_still_loads_under_the_old_lock() -> None:
    engine = JourneyEngine([load_journey_text(SPLIT_THEN_SPLIT)])
    state = engine.apply(UserState.new("u"), signed_up("u"), T0).state
    document = state.to_document()
    entry_document = next(iter(document["journeys"]["j"]["entries"].values()))
    chosen = entry_document["winners"]["first"]
    del entry_document["winners"]
    entry_document["winner"] = chosen
    entry = EntryState.from_document(entry_document)
    assert entry.winners == {LEGACY_DECISION: chosen}
    assert EntryState.from_document({**entry_document, "winner": None}).winners == {}

    old = UserState.from_document(document)
    timer = old.timers[0]
    fired = engine.apply(old, TimerFired("u", timer.timer_id, timer.due_at), timer.due_at)
    (bye,) = [e for e in fired.effects if isinstance(e, Send)]
    lock = f"j:u:{entry.entry_id}"
    assert bye.branches[0] == (lock, chosen)  # the lock the old sends of this entry claimed
    assert bye.branches[1][0] == f"{lock}:second"
