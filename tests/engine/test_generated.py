"""Properties of the engine over generated cases (tests/generated): random journeys, global rules
and event streams, at the sim scale (hours and days, near DST changes) and the live scale
(seconds). Every generated file loads; simulating is deterministic and does not depend on how
the stream is cut into batches; no dispatch id is sent twice; each decision of an entry sends
down one branch at most; no entry is left without a way on; each send is what its message step
names. Hypothesis draws the seeds (the same ones every run), so a failure shrinks to a seed:
`generate_case(seed, SIM)` or `generate_case(seed, LIVE, LIVE_BASE)` rebuilds it."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from app.engine import (
    Analytics,
    Journey,
    Send,
    UserEvent,
    load_journey_text,
    load_simulation_rules_text,
)
from app.engine import conditions as c
from app.engine.definitions import (
    BranchStep,
    DelayStep,
    EventEntry,
    MessageStep,
    PathsStep,
    SplitStep,
    WaitForStep,
    successors,
)
from app.engine.figures import NOW_HOUR, WAITING, increments
from app.engine.simulator import SimulatedEffect, Simulator
from app.topics import load_contract
from tests.generated import LIVE, SIM, Case, TimeScale, generate_case

# The base time of live-scale cases here (the live test uses the time it starts).
LIVE_BASE = datetime(2026, 3, 29, 0, 59, 31, tzinfo=UTC)  # half a minute before the EU's DST
SCALES = {"sim": SIM, "live": LIVE}
SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
PROPERTY = settings(
    max_examples=20,
    deadline=None,
    derandomize=True,  # the same seeds every run
    database=None,
    # A failure is reported as its seed; shrinking seeds would only take time.
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow],
)


def case_of(seed: int, scale: TimeScale) -> Case:
    return generate_case(seed, scale, LIVE_BASE if scale.live else None)


def run(case: Case, batches: list[list[dict]]) -> Simulator:
    """The case's stream fed in `batches`, in publishing order, then every due timer fired."""
    simulator = Simulator(case.engine())
    for batch in batches:
        simulator.feed([UserEvent.from_record(record) for record in batch])
    simulator.finish()
    return simulator


def records(effects: list[SimulatedEffect]) -> list[dict]:
    return [effect.to_record() for effect in effects]


def sends(simulator: Simulator) -> list[Send]:
    return [e.effect for e in simulator.effects if isinstance(e.effect, Send)]


def shown(case: Case, detail: object) -> str:
    return f"{detail}\n{case.describe()}"


@pytest.mark.parametrize("scale", SCALES)
@PROPERTY
@given(seed=SEEDS)
def test_every_generated_file_loads_and_every_event_is_valid(scale: str, seed: int) -> None:
    case = case_of(seed, SCALES[scale])
    for text in case.journeys:
        load_journey_text(text)
    if case.rules is not None:
        load_simulation_rules_text(case.rules)
    contract = load_contract("user-events")
    for record in case.events:
        contract.validate(record)
    assert len({r["user_id"] for r in case.events}) >= 3


@pytest.mark.parametrize("scale", SCALES)
@PROPERTY
@given(seed=SEEDS)
def test_simulating_is_deterministic(scale: str, seed: int) -> None:
    case = case_of(seed, SCALES[scale])
    first = records(run(case, [list(case.events)]).effects)
    again = records(run(case_of(seed, SCALES[scale]), [list(case.events)]).effects)
    assert first == again, shown(case, "two runs of one case differ")


@pytest.mark.parametrize("scale", SCALES)
@PROPERTY
@given(seed=SEEDS)
def test_the_effects_do_not_depend_on_how_the_stream_is_batched(scale: str, seed: int) -> None:
    """All at once, one by one, and in random chunks, in the order the stream is published."""
    case = case_of(seed, SCALES[scale])
    stream = list(case.events)
    cuts = sorted(random.Random(seed).sample(range(len(stream) + 1), 3))
    whole = sorted(records(run(case, [stream]).effects), key=str)
    for batches in (
        [[record] for record in stream],
        [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)],
    ):
        batched = sorted(records(run(case, batches).effects), key=str)
        assert batched == whole, shown(
            case, f"batches of sizes {[len(b) for b in batches]}:\n{diff(whole, batched)}"
        )


def diff(expected: list[dict], actual: list[dict]) -> str:
    missing = [r for r in expected if r not in actual]
    extra = [r for r in actual if r not in expected]
    return "\n".join([*(f"- {r}" for r in missing), *(f"+ {r}" for r in extra)])


@pytest.mark.parametrize("scale", SCALES)
@PROPERTY
@given(seed=SEEDS)
def test_no_dispatch_id_is_sent_twice(scale: str, seed: int) -> None:
    case = case_of(seed, SCALES[scale])
    counts = Counter(send.dispatch_id for send in sends(run(case, [list(case.events)])))
    assert [d for d, n in counts.items() if n > 1] == [], shown(case, "repeated dispatch ids")


@pytest.mark.parametrize("scale", SCALES)
@PROPERTY
@given(seed=SEEDS)
def test_each_decision_of_an_entry_sends_down_one_branch_at_most(scale: str, seed: int) -> None:
    """Per entry and paths or split step: at most one path chosen."""
    case = case_of(seed, SCALES[scale])
    simulator = run(case, [list(case.events)])
    chosen: Counter[tuple[str, str, str, str | None]] = Counter()
    for item in simulator.effects:
        effect = item.effect
        if isinstance(effect, Analytics) and effect.event == "path_chosen":
            chosen[(effect.journey_id, effect.user_id, effect.entry_id, effect.step_id)] += 1
    assert [k for k, n in chosen.items() if n > 1] == [], shown(case, "decided twice")


@pytest.mark.parametrize("scale", SCALES)
@PROPERTY
@given(seed=SEEDS)
def test_the_sends_claiming_a_decision_claim_one_branch_of_it(scale: str, seed: int) -> None:
    """The worker takes one Redis lock per decision of an entry
    (`<journey>:<user>:<entry>:<step>`) and lets through only the branch that took it first:
    every send claiming a decision must claim the same branch of it, or the worker refuses a
    send the simulator made (or sends two branches of one decision)."""
    case = case_of(seed, SCALES[scale])
    by_lock: dict[str, set[str]] = defaultdict(set)
    for send in sends(run(case, [list(case.events)])):
        for lock, branch in send.branches:
            by_lock[lock].add(branch)
    assert {k: v for k, v in by_lock.items() if len(v) > 1} == {}, shown(
        case, "one entry's sends carry different branches"
    )


@pytest.mark.parametrize("scale", SCALES)
@PROPERTY
@given(seed=SEEDS)
def test_no_entry_is_left_hanging(scale: str, seed: int) -> None:
    """After every due timer fired, each entry still active waits for a timer of its own."""
    case = case_of(seed, SCALES[scale])
    simulator = run(case, [list(case.events)])
    hanging = [
        (state.user_id, entry.journey_id, entry.entry_id)
        for state in simulator.states.values()
        for entry in state.active_entries()
        if not state.timers_of(entry)
    ]
    assert hanging == [], shown(case, f"entries without a pending timer: {hanging}")


@pytest.mark.parametrize("scale", SCALES)
@PROPERTY
@given(seed=SEEDS)
def test_every_send_is_what_its_message_step_names(scale: str, seed: int) -> None:
    case = case_of(seed, SCALES[scale])
    journeys = {journey.id: journey for journey in case.loaded()}
    for send in sends(run(case, [list(case.events)])):
        step = journeys[send.journey_id].steps[send.step_id]
        assert isinstance(step, MessageStep), shown(case, send)
        assert (send.channel, send.template_id) == (step.channel, step.template), shown(case, send)


@PROPERTY
@given(seed=SEEDS)
def test_live_cases_settle_within_the_live_window(seed: int) -> None:
    """What the live test waits for: every timer of a live-scale case comes due within `settle`
    of its base time, or `far` after it (past any live run), never in between."""
    case = case_of(seed, LIVE)
    simulator = Simulator(case.engine())
    simulator.feed(case.user_events())
    simulator.run_until(case.base + LIVE.settle)
    pending = sorted(
        (timer.due_at, timer.timer_id)
        for state in simulator.states.values()
        for timer in state.timers
        if timer.due_at < case.base + LIVE.far
    )
    assert pending == [], shown(case, f"timers due after the live window: {pending}")


def test_the_generated_cases_cover_every_step_type_and_option() -> None:
    """Over the first 40 seeds of each scale, the journeys use everything the loader accepts."""
    seen: set[str] = set()
    for scale in SCALES.values():
        for seed in range(40):
            case = case_of(seed, scale)
            seen |= features(case.loaded())
            if case.rules is not None:
                rules = load_simulation_rules_text(case.rules)
                seen |= {"rules quiet hours"} if rules.quiet_hours else set()
                seen |= {"rules frequency caps"} if rules.frequency_caps else set()
    wanted = {
        "delay duration", "delay until_time", "delay until_attribute", "message email",
        "message push", "message sms", "message webhook", "branch", "branch in branch",
        "wait_for", "paths", "paths after a decision", "split", "split after split", "exit",
        "goal", "exit event", "exit condition", "re_entry once", "re_entry every_time",
        "re_entry cooldown", "holdout", "quiet hours", "frequency caps", "rules quiet hours",
        "rules frequency caps", "entry event", "entry properties", "entry of_event",
        "entry of_attribute", "entry attribute", "entry schedule", "audience", "several journeys",
        "goal exit_on_conversion", "entry limits", "since_entry", "contains or prefix",
        "property operators",
    }  # fmt: skip
    assert wanted - seen == set()


def features(journeys: list[Journey]) -> set[str]:
    found = {"several journeys"} if len(journeys) > 1 else set()
    for journey in journeys:
        entry = journey.entry
        found.add(f"entry {type(entry).__name__.removesuffix('Entry').lower()}")
        if isinstance(entry, EventEntry):
            found |= {"entry properties"} if entry.properties else set()
            found |= {"entry of_event"} if entry.of_event else set()
            found |= {"entry of_attribute"} if entry.of_attribute else set()
        found.add(f"re_entry {journey.re_entry.policy}")
        optional = {
            "audience": journey.audience,
            "holdout": journey.holdout_percent,
            "exit event": journey.exit_events,
            "exit condition": journey.exit_conditions,
            "goal": journey.goal,
            "quiet hours": journey.rules.quiet_hours,
            "frequency caps": journey.rules.frequency_caps,
        }
        found |= {name for name, value in optional.items() if value}
        found |= (
            {"goal exit_on_conversion"}
            if journey.goal and journey.goal.exit_on_conversion
            else set()
        )
        found |= {"entry limits"} if journey.entry_limits else set()
        filters = [x.properties for x in journey.exit_events]
        filters += [journey.goal.properties] if journey.goal else []
        filters += [entry.properties] if isinstance(entry, EventEntry) else []
        filters += [s.properties for s in journey.steps.values() if isinstance(s, WaitForStep)]
        if any(isinstance(v, dict) for wanted in filters for v in wanted.values()):
            found.add("property operators")
        conditions = [*journey.exit_conditions]
        for step in journey.steps.values():
            if isinstance(step, BranchStep):
                conditions.append(step.condition)
            if isinstance(step, PathsStep):
                conditions += [p.condition for p in step.paths if p.condition]
        for leaf in (leaf for condition in conditions for leaf in leaves(condition)):
            found |= {"since_entry"} if isinstance(leaf, c.SinceEntry) else set()
            found |= {"contains or prefix"} if isinstance(leaf, c.TextMatch) else set()
        for step in journey.steps.values():
            after = [journey.steps[t] for _, t in successors(step) if t in journey.steps]
            decision = isinstance(step, BranchStep | PathsStep | SplitStep)
            match step:
                case DelayStep():
                    kind = next(
                        k for k in ("duration", "until_time", "until_attribute") if getattr(step, k)
                    )
                    found.add(f"delay {kind}")
                case MessageStep():
                    found.add(f"message {step.channel}")
                case WaitForStep():
                    found.add("wait_for")
                case _:
                    found.add(type(step).__name__.removesuffix("Step").lower())
            if decision and any(isinstance(s, PathsStep) for s in after):
                found.add("paths after a decision")
            if isinstance(step, SplitStep) and any(isinstance(s, SplitStep) for s in after):
                found.add("split after split")
            if isinstance(step, BranchStep) and any(isinstance(s, BranchStep) for s in after):
                found.add("branch in branch")
    return found


def leaves(condition: c.Condition) -> list[c.Condition]:
    match condition:
        case c.All() | c.Any_():
            return [leaf for part in condition.parts for leaf in leaves(part)]
        case c.Not():
            return leaves(condition.part)
    return [condition]


@PROPERTY
@given(seed=SEEDS, scale=st.sampled_from(sorted(SCALES)))
def test_the_waiting_gauge_counts_the_entries_waiting_at_each_step(seed: int, scale: str) -> None:
    """The flow page's "waiting now" is a count kept from the `waiting` records, never a scan:
    midway through a stream and after it, it equals the entries whose timers wait at each step
    in the users' states (an entry waiting only for its goal window waits at no step)."""
    case = case_of(seed, SCALES[scale])
    simulator = Simulator(case.engine())
    stream = case.user_events()
    for part in (stream[: len(stream) // 2], stream[len(stream) // 2 :]):
        simulator.feed(part)
        counted = {
            (journey, version, step): names[WAITING]
            for (journey, version, hour, step), names in increments(
                e.effect.to_record() for e in simulator.effects if isinstance(e.effect, Analytics)
            ).items()
            if hour == NOW_HOUR and names[WAITING]
        }
        waiting = {
            (t.journey_id, state.entries(t.journey_id)[t.entry_id].version, t.entry_id, t.step_id)
            for state in simulator.states.values()
            for t in state.timers
            if t.purpose != "goal_window"
        }
        expected = Counter((journey, version, step) for journey, version, _, step in waiting)
        assert counted == dict(expected), shown(case, (counted, expected))
