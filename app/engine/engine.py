"""JourneyEngine: (user state, input, now) -> (new state, effects). Pure: no I/O, no wall clock,
no unseeded randomness. Logic runs at the input's own time (an event's `at`, never later than
`now` nor than its receipt; a timer's due time; a schedule's tick), so the simulator and the
workers agree, and a replayed input gives the same dispatch ids.

Ties: a window includes its end point, so an event at exactly a deadline counts as in time (the
goal window, an entry window, a wait_for timeout, a path's due time); at equal timestamps events
are applied before timers and schedule ticks (`app.engine.inputs.input_order`). Elapsed time is
the mirror image: a cooldown is over at its end point (re-entry exactly `cooldown` after the last
entry is allowed), and a frequency cap counts the sends less than its window ago."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.engine.conditions import MongoFilter, property_filter
from app.engine.definitions import (
    NO_ACTION,
    AttributeEntry,
    BranchStep,
    DelayStep,
    EventEntry,
    ExitStep,
    Journey,
    MessageStep,
    PathsStep,
    Rules,
    ScheduleEntry,
    SplitStep,
    WaitForStep,
)
from app.engine.digests import collect, digest_view, open_digests, restart
from app.engine.durations import format_duration
from app.engine.effects import (
    Analytics,
    CancelTimer,
    Effect,
    ScheduleTimer,
    Send,
    Transition,
    utc_text,
)
from app.engine.entry_limits import EntrySlot
from app.engine.figures import ARRIVED, LEFT, WAITING
from app.engine.inputs import (
    EngineInput,
    EventTimePolicy,
    ScheduledEntry,
    TimerFired,
    UserEvent,
    known_zone,
)
from app.engine.lifecycle import (
    PAUSED,
    PUBLISHED,
    Deployment,
    VersionMissing,
    recheck_after,
)
from app.engine.state import (
    APPLIED_INPUTS_KEPT,
    LEGACY_DECISION,
    SENDS_KEPT,
    EntryState,
    PendingTimer,
    UserState,
)

MAX_STEPS_PER_INPUT = 1000
# The kind of the last refusal recorded per journey in a user's journey record: a refusal of the
# same kind is not recorded again until the user enters.
NOT_ENTERED = "not_entered"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # property filters do not read the time
ADDRESS_ATTRIBUTE = {"email": "email", "push": "push_token", "sms": "phone", "webhook": None}


def dispatch_id(journey_id: str, version: int, user_id: str, entry_id: str, step_id: str) -> str:
    key = f"{journey_id}|{version}|{user_id}|{entry_id}|{step_id}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def branch_claims(user_id: str, entry: EntryState) -> tuple[tuple[str, str], ...]:
    """(lock name, branch id) for every decision the entry took: one lock per decision step, so
    each decision admits one branch ever, whatever other decisions came before."""
    entry_lock = f"{entry.journey_id}:{user_id}:{entry.entry_id}"
    return tuple(
        (entry_lock if step_id == LEGACY_DECISION else f"{entry_lock}:{step_id}", branch_id)
        for step_id, branch_id in entry.winners.items()
    )


def stable_percent(*parts: str) -> float:
    """A stable number in [0, 100) per key: splits and holdouts without randomness."""
    digest = hashlib.sha256("|".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


def to_millis(moment: datetime) -> datetime:
    """MongoDB keeps milliseconds: times are cut to them so a stored state equals a computed one."""
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _parse_attribute(value: Any) -> Any:
    """Attribute values that are RFC 3339 date-times are kept as datetimes, so conditions can
    measure time since them."""
    if isinstance(value, str) and len(value) >= 20 and value[10] == "T":
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return value
        if parsed.tzinfo is not None:
            return to_millis(parsed)
    return value


def zone_named(name: str | None) -> ZoneInfo:
    """A time zone by IANA name; UTC when missing or not a zone this machine knows."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def zone_of(state: UserState) -> ZoneInfo:
    return zone_named(state.timezone)


def _matches(properties: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """An event's properties against a filter of the journey (entry, wait_for, exit, goal)."""
    return not wanted or property_filter(wanted).test({"properties": properties}, EPOCH)


def _about_message(
    event: UserEvent, journey: Journey, user_id: str, entry: EntryState, message: str | None
) -> bool:
    """Whether the event is about what `message` (a step id) sent in this entry: its
    `dispatch_id` property is that send's dispatch id. No message asked: any event is."""
    if message is None:
        return True
    expected = dispatch_id(journey.id, journey.version, user_id, entry.entry_id, message)
    return event.properties.get("dispatch_id") == expected


def _split_variants(journey: Journey, entry: EntryState) -> tuple[tuple[str, str], ...]:
    """(split step, branch) for each split the entry went through."""
    return tuple(
        (step_id, branch_id)
        for step_id, branch_id in entry.winners.items()
        if isinstance(journey.steps.get(step_id), SplitStep)
    )


def _json_safe(values: dict[str, Any]) -> dict[str, Any]:
    return {k: utc_text(v) if isinstance(v, datetime) else v for k, v in values.items()}


def send_variables(state: UserState, entry: EntryState, step: MessageStep) -> dict[str, Any]:
    """A send's template variables: the user's attributes by name, the entry event's
    properties under `event` and, for a step with a digest, `digest`
    (`app.engine.digests.digest_view`). `journeys preview` and test sends take them from here,
    so they render what the send would."""
    variables = {**_json_safe(state.attributes), "event": entry.context}
    if step.digest is not None:
        variables["digest"] = digest_view(
            state, entry.journey_id, step.id, step.digest, entry.entered_at
        )
    return variables


@dataclass
class _Run:
    """One input's work on a copy of the state."""

    state: UserState
    effects: list[Effect]
    at: datetime
    input_id: str
    slots: Mapping[str, bool]  # answers to entry slots (grant id -> granted)
    asks: list[EntrySlot]  # entry slots without an answer yet


class JourneyEngine:
    def __init__(
        self,
        journeys: Iterable[Journey],
        rules: Rules | None = None,
        entry_versions: dict[str, int] | None = None,
        event_time: EventTimePolicy | None = None,
        deployments: Mapping[tuple[str, int], Deployment] | None = None,
    ) -> None:
        """`journeys` holds every version users may be in. New entries use `entry_versions`
        (journey id -> version) when given, else each journey's newest published version.
        `event_time` bounds the event times accepted (default: 7 days back, 5 minutes ahead of
        receipt). `deployments` ((journey id, version) -> its status and times, from the
        registry) default to published, before any event."""
        self.event_time = event_time or EventTimePolicy()
        self.versions: dict[tuple[str, int], Journey] = {(j.id, j.version): j for j in journeys}
        self.deployments = dict(deployments or {})
        self.rules = rules or Rules()
        newest: dict[str, Journey] = {}
        for journey in self.versions.values():
            if self.deployment(journey.id, journey.version).status != PUBLISHED:
                continue
            if journey.id not in newest or journey.version > newest[journey.id].version:
                newest[journey.id] = journey
        if entry_versions is not None:
            newest = {
                journey_id: self.versions[(journey_id, version)]
                for journey_id, version in entry_versions.items()
                if (journey_id, version) in self.versions
            }
        self.current: dict[str, Journey] = newest

    # --- the public function ---------------------------------------------------------------

    def apply(
        self,
        state: UserState,
        item: EngineInput,
        now: datetime,
        slots: Mapping[str, bool] | None = None,
    ) -> Transition:
        """The input applied to the state. `slots` answers the entry slots of journeys with
        entry limits; a slot without an answer comes back in `asks` (see
        `app.engine.entry_limits`)."""
        if item.user_id != state.user_id:
            raise ValueError(f"input for user {item.user_id!r} applied to user {state.user_id!r}")
        if isinstance(item, UserEvent):
            self.event_time.check(item)
        if item.input_id in state.applied or (
            isinstance(item, TimerFired)
            and not any(t.timer_id == item.timer_id for t in state.timers)
        ):
            return Transition(state, [])  # a replay, or a cancelled timer firing late: no change
        run = _Run(
            state.copy(), [], to_millis(self._time_of(item, now)), item.input_id, slots or {}, []
        )
        self._exit_asked(run)
        match item:
            case UserEvent():
                self._on_event(run, item)
            case TimerFired():
                if any(t.timer_id == item.timer_id for t in run.state.timers):
                    self._on_timer(run, item)
            case ScheduledEntry():
                self._on_tick(run, item)
        self._fire_due_now(run)
        _waiting_changes(state, run)
        run.state.applied = [*run.state.applied, item.input_id][-APPLIED_INPUTS_KEPT:]
        run.state.version += 1
        return Transition(run.state, run.effects, tuple(run.asks))

    def deployment(self, journey_id: str, version: int) -> Deployment:
        return self.deployments.get((journey_id, version)) or Deployment()

    def audience_filter(self, journey_id: str, now: datetime) -> MongoFilter:
        """The users a scheduled journey's audience selects, as a MongoDB filter."""
        journey = self.current[journey_id]
        return journey.audience.mongo(now) if journey.audience else {}

    @staticmethod
    def _time_of(item: EngineInput, now: datetime) -> datetime:
        match item:
            case UserEvent():
                return min(item.at, now, item.received_at or item.at)
            case TimerFired():
                return item.due_at
            case ScheduledEntry():
                return item.tick
        raise TypeError(f"not an engine input: {item!r}")

    # --- inputs ----------------------------------------------------------------------------

    def _on_event(self, run: _Run, event: UserEvent) -> None:
        state, at = run.state, run.at
        changed = self._update_profile(state, event, at)
        history = state.events.setdefault(event.name, {"count": 0, "first_at": at, "last_at": at})
        history["count"] += 1
        history["last_at"] = max(history["last_at"], at)
        collect(state, event.name, at, event.properties)

        for entry in state.active_entries():
            journey = self._journey_of(entry)
            if any(
                x.event == event.name and _matches(event.properties, x.properties)
                for x in journey.exit_events
            ):
                self._finish(run, entry, "exited", f"exit event {event.name}")
                continue
            if self._check_goal(run, entry, journey, event):
                continue
            if entry.waiting_for is not None:
                step = journey.steps[entry.waiting_for]
                if (
                    isinstance(step, WaitForStep)
                    and step.event == event.name
                    and _matches(event.properties, step.properties)
                    and _about_message(event, journey, state.user_id, entry, step.message)
                ):
                    self._cancel_timers(run, entry, purpose="wait_timeout")
                    entry.waiting_for = None
                    self._analytics(run, entry, step.id, "waited", f"performed {event.name}")
                    self._advance(run, entry, step.performed)
        self._exit_on_conditions(run)
        self._check_finished_goals(run, event)

        for journey in self.current.values():
            trigger = journey.entry
            if isinstance(trigger, EventEntry) and trigger.event == event.name:
                if _matches(event.properties, trigger.properties) and self._in_window(
                    state, trigger, at
                ):
                    self._enter(run, journey, event.properties)
            elif isinstance(trigger, AttributeEntry) and trigger.attribute in changed:
                self._enter(run, journey, {})

    def _on_timer(self, run: _Run, fired: TimerFired) -> None:
        state = run.state
        timer = next(t for t in state.timers if t.timer_id == fired.timer_id)
        state.timers = [t for t in state.timers if t.timer_id != timer.timer_id]
        entry = state.entries(timer.journey_id).get(timer.entry_id)
        if entry is None:
            return
        journey = self._journey_of(entry)
        if self._exits(run, entry, journey):
            return
        if timer.purpose == "goal_window":
            self._finish(run, entry, "completed", "goal window ended")
        elif timer.purpose in ("delay", "quiet_hours"):
            step = journey.steps[timer.step_id]
            if timer.purpose == "quiet_hours":
                self._advance(run, entry, step.id, resume_send=True)
            else:
                self._advance(run, entry, step.next)  # type: ignore[union-attr]
        elif timer.purpose == "wait_timeout":
            step = journey.steps[timer.step_id]
            assert isinstance(step, WaitForStep)
            entry.waiting_for = None
            self._analytics(run, entry, step.id, "waited", "timed out")
            self._advance(run, entry, step.timed_out)
        elif timer.purpose == "path":
            self._on_path_due(run, entry, journey, timer)
        elif timer.purpose == "paused":
            step = journey.steps[timer.step_id]
            assert isinstance(step, MessageStep)
            if self.deployment(journey.id, journey.version).status == PAUSED:
                self._park(run, entry, step)
            else:
                entry.paused_since = None
                self._analytics(run, entry, step.id, "waited", "journey resumed")
                self._advance(run, entry, step.id)

    def _on_tick(self, run: _Run, tick: ScheduledEntry) -> None:
        journey = self.current.get(tick.journey_id)
        if journey is None and any(j == tick.journey_id for j, _ in self.versions):
            return  # paused or archived since the tick was published: no entry
        if journey is None or not isinstance(journey.entry, ScheduleEntry):
            raise LookupError(f"no scheduled journey '{tick.journey_id}' is deployed")
        self._enter(run, journey, {})

    def _fire_due_now(self, run: _Run) -> None:
        """Fires, within this input, the timers it set that are due at its own time (a path
        with no delay, a date already passed). As inputs of their own they would tie with the
        user's other timers due then, which the workers take in the order their pump publishes
        them and the simulator by timer id."""
        while due := [
            effect
            for effect in run.effects
            if isinstance(effect, ScheduleTimer) and effect.due_at <= run.at
        ]:
            first = min(due, key=lambda effect: (effect.due_at, effect.timer_id))
            run.effects.remove(first)
            if any(t.timer_id == first.timer_id for t in run.state.timers):
                self._on_timer(run, TimerFired(run.state.user_id, first.timer_id, first.due_at))

    def _on_path_due(
        self, run: _Run, entry: EntryState, journey: Journey, timer: PendingTimer
    ) -> None:
        step = journey.steps[timer.step_id]
        assert isinstance(step, PathsStep)
        path = next(p for p in step.paths if p.id == timer.path_id)
        if step.id not in entry.winners and (
            path.condition is None
            or path.condition.test(self._view(run.state), run.at, entry.entered_at)
        ):
            entry.winners[step.id] = path.id
            dropped = [t.path_id for t in run.state.timers_of(entry) if t.purpose == "path"]
            self._cancel_timers(run, entry, purpose="path")
            self._analytics(
                run, entry, step.id, "path_chosen", f"path {path.id}: first eligible when due"
            )
            for other in dropped:
                reason = f"path {other}: dropped, path {path.id} won first"
                self._analytics(run, entry, step.id, "path_dropped", reason)
            self._advance(run, entry, path.next)
            return
        self._analytics(
            run, entry, step.id, "path_skipped", f"path {path.id}: conditions did not hold when due"
        )
        if (
            not any(t.purpose == "path" for t in run.state.timers_of(entry))
            and step.id not in entry.winners
        ):
            self._finish(run, entry, "exited", "no path was eligible")

    # --- profile ---------------------------------------------------------------------------

    @staticmethod
    def _update_profile(state: UserState, event: UserEvent, at: datetime) -> set[str]:
        """Applies the event's updates; returns the attributes whose value changed, and keeps
        when each last changed (what `{attribute: A, changed_since_entry: true}` reads)."""
        changed = set()
        for name, value in event.attributes.items():
            if value is None:
                if name in state.attributes:
                    del state.attributes[name]
                    changed.add(name)
                continue
            value = _parse_attribute(value)
            if state.attributes.get(name) != value:
                state.attributes[name] = value
                changed.add(name)
        for name in changed:
            state.changed[name] = max(state.changed.get(name, at), at)
        state.subscriptions.update(event.subscriptions)
        state.topics.update(event.topics)
        if event.timezone and known_zone(event.timezone):  # else the last valid zone stays
            state.timezone = event.timezone
        if event.locale:
            state.locale = event.locale
        return changed

    @staticmethod
    def _view(state: UserState) -> dict[str, Any]:
        """What conditions read: the same fields as the stored document."""
        return {
            "attributes": state.attributes,
            "subscriptions": state.subscriptions,
            "topics": state.topics,
            "events": state.events,
            "received": state.received,
            "changed": state.changed,
        }

    # --- entering and leaving --------------------------------------------------------------

    def _in_window(self, state: UserState, trigger: EventEntry, at: datetime) -> bool:
        if trigger.within is None:
            return True
        if trigger.of_event is not None:
            reference = state.events.get(trigger.of_event, {}).get("first_at")
        else:
            reference = state.attributes.get(trigger.of_attribute or "")
        return isinstance(reference, datetime) and reference <= at <= reference + trigger.within

    def _refusal(self, journey: Journey, at: datetime) -> str | None:
        """Why the journey takes no entry at `at`, or None when it does: it must be published,
        `at` within its `starts_at` and `ends_at` (end points included), and for an event or
        attribute entry, an input at or after the journey was first published unless it says
        `enter_past_events`."""
        deployment = self.deployment(journey.id, journey.version)
        published_at = deployment.published_at
        if deployment.status != PUBLISHED:
            return f"journey {deployment.status}"
        if journey.starts_at is not None and at < journey.starts_at:
            return f"before the journey starts ({journey.starts_at:%Y-%m-%d %H:%M} UTC)"
        if journey.ends_at is not None and at > journey.ends_at:
            return f"after the journey ended ({journey.ends_at:%Y-%m-%d %H:%M} UTC)"
        if (
            published_at is not None
            and not journey.enter_past_events
            and not isinstance(journey.entry, ScheduleEntry)
            and at < published_at
        ):
            return "event from before the journey was published"
        return None

    def _exit_asked(self, run: _Run) -> None:
        """Entries the operator asked to exit (`--exit-users` on archive, pause or resume)
        exit at the user's next input, before it does anything else."""
        for entry in run.state.active_entries():
            deployment = self.deployments.get((entry.journey_id, entry.version))
            if deployment is not None and deployment.exits(entry.entered_at):
                reason = f"version {entry.version} {deployment.status}: users asked to exit"
                self._finish(run, entry, "exited", reason)

    def _park(self, run: _Run, entry: EntryState, step: MessageStep) -> None:
        """Waits at a message while the version is paused, looking again with backoff."""
        if entry.paused_since is None:
            entry.paused_since = run.at
            self._analytics(run, entry, step.id, "waited", "journey paused")
        due = run.at + recheck_after(run.at - entry.paused_since)
        stamp = f"{to_millis(due):%Y%m%dT%H%M%S%f}"
        self._schedule(run, entry, step.id, due, "paused", instance=stamp)

    def _enter(self, run: _Run, journey: Journey, context: dict[str, Any]) -> None:
        state, at = run.state, run.at
        record = state.journeys.setdefault(journey.id, {"entries": {}, "entered": 0})
        refusal = self._refusal(journey, at) or self._blocked(state, journey, record, at)
        if refusal is not None:
            self._not_entered(run, journey, record, refusal)
            return
        entry_id = _entry_id(run)
        if journey.entry_limits is not None and not self._entry_slot(run, journey, entry_id):
            return
        record.pop(NOT_ENTERED, None)
        entry = EntryState(
            entry_id=entry_id,
            journey_id=journey.id,
            version=journey.version,
            entered_at=at,
            holdout=stable_percent("holdout", journey.id, state.user_id) < journey.holdout_percent,
            context=_json_safe(context),
        )
        record["entries"][entry_id] = entry
        record["entered"] += 1
        record["last_entered_at"] = at
        self._analytics(
            run,
            entry,
            None,
            "entered",
            "holdout (control group: no messages)" if entry.holdout else None,
        )
        if journey.goal is not None:
            entry.goal_until = at + journey.goal.within
        if entry.holdout:
            # Control group: tracked for the goal, never messaged.
            if entry.goal_until is not None:
                self._schedule(run, entry, journey.start, entry.goal_until, "goal_window")
            else:
                self._finish(run, entry, "completed", "holdout")
            return
        open_digests(state, journey, at)
        self._advance(run, entry, journey.start)

    def _blocked(
        self, state: UserState, journey: Journey, record: dict[str, Any], at: datetime
    ) -> str | None:
        """Why this user may not enter now (audience, re-entry policy), or None."""
        if journey.audience is not None and not journey.audience.test(self._view(state), at):
            return f"not in the audience ({journey.audience.describe()})"
        last = record.get("last_entered_at")
        policy = journey.re_entry
        if record["entered"] and policy.policy == "once":
            return "re-entry blocked: entered once already (re_entry: once)"
        if policy.policy == "cooldown" and last is not None:
            until = last + (policy.cooldown or timedelta())
            if at < until:
                return f"re-entry blocked: cooldown until {until:%Y-%m-%d %H:%M} UTC"
        if policy.policy != "every_time" and record["entries"]:
            return "re-entry blocked: still inside the journey"
        return None

    @staticmethod
    def _not_entered(run: _Run, journey: Journey, record: dict[str, Any], reason: str) -> None:
        """Puts why on the timeline, so "why didn't Ana get it?" has an answer; a reason of the
        same kind as the one recorded last for this journey is not recorded again (an event
        every minute must not grow the timeline by one refusal a minute)."""
        kind = reason.split(":")[0].split("(")[0].strip()
        if record.get(NOT_ENTERED) == kind:
            return
        record[NOT_ENTERED] = kind
        _refused(run, journey, _entry_id(run), "not_entered", reason)

    @staticmethod
    def _entry_slot(run: _Run, journey: Journey, entry_id: str) -> bool:
        """Whether the journey's entry limits admit this entry: the answer the shell gave for
        its slot, or no (and the slot asked for) when it gave none yet. A refusal is on the
        timeline as `entry_limited`, under the entry id the entry would have had."""
        assert journey.entry_limits is not None
        slot = EntrySlot(
            f"{journey.id}|{run.state.user_id}|{run.input_id}",
            journey.id,
            run.at.replace(second=0, microsecond=0),
            journey.entry_limits,
        )
        granted = run.slots.get(slot.grant_id)
        if granted is None:
            run.asks.append(slot)
            return False
        if not granted:
            reason = f"entry limit reached ({journey.entry_limits.describe()})"
            _refused(run, journey, entry_id, "entry_limited", reason)
        return granted

    def _check_goal(self, run: _Run, entry: EntryState, journey: Journey, event: UserEvent) -> bool:
        """Records a conversion, with the split variants the entry took; returns whether the
        entry finished with it (a holdout entry, or a goal with `exit_on_conversion`)."""
        goal = journey.goal
        if goal is None or entry.converted or entry.goal_until is None:
            return False
        if not (
            event.name == goal.event
            and _matches(event.properties, goal.properties)
            and run.at <= entry.goal_until
        ):
            return False
        entry.converted = True
        self._analytics(
            run,
            entry,
            None,
            "converted",
            f"{goal.event} within {format_duration(goal.within)}",
            _split_variants(journey, entry),
        )
        if entry.holdout:
            self._finish(run, entry, "completed", "holdout converted")
            return True
        if goal.exit_on_conversion:
            self._finish(run, entry, "exited", f"converted ({goal.event}): exit on conversion")
            return True
        return False

    def _exit_on_conditions(self, run: _Run) -> None:
        for entry in run.state.active_entries():
            self._exits(run, entry, self._journey_of(entry))

    def _exits(self, run: _Run, entry: EntryState, journey: Journey) -> bool:
        """Exits the entry when one of its journey's exit conditions holds now. Checked on every
        event, every timer and before every step (a message included), so a condition that
        comes true with time (`since_attribute`, `within`) exits the user before the next thing
        the journey does, not only when some event arrives."""
        view = self._view(run.state)
        for condition in journey.exit_conditions:
            if condition.test(view, run.at, entry.entered_at):
                self._finish(run, entry, "exited", f"exit condition {condition.describe()}")
                return True
        return False

    def _check_finished_goals(self, run: _Run, event: UserEvent) -> None:
        """Conversions of entries that finished before their goal window ended: a user who
        converts a day after the last message still converted, as a holdout user (who stays
        for the whole window) does, so the two groups are counted alike. A window that ended
        is dropped; so is one of a version no longer loaded."""
        for journey_id, record in run.state.journeys.items():
            goals: dict[str, dict[str, Any]] = record.get("goals") or {}
            for entry_id, tracked in list(goals.items()):
                journey = self.versions.get((journey_id, tracked["version"]))
                goal = journey.goal if journey is not None else None
                if goal is None or run.at > tracked["until"]:
                    del goals[entry_id]
                elif event.name == goal.event and _matches(event.properties, goal.properties):
                    del goals[entry_id]
                    run.effects.append(
                        Analytics(
                            "converted",
                            journey_id,
                            tracked["version"],
                            run.state.user_id,
                            entry_id,
                            None,
                            run.at,
                            f"{goal.event} within {format_duration(goal.within)} (after the"
                            " entry ended)",
                            variants=tuple(sorted(tracked["variants"].items())),
                        )
                    )
            if not goals:
                record.pop("goals", None)

    def _finish(self, run: _Run, entry: EntryState, event: str, reason: str) -> None:
        """Ends the entry. Its goal is still tracked until its window ends when it did not
        convert (holdout entries stay active for that)."""
        self._cancel_timers(run, entry)
        journey_record = run.state.journeys[entry.journey_id]
        journey_record["entries"].pop(entry.entry_id, None)
        self._analytics(run, entry, None, event, reason)
        if (
            entry.goal_until is not None
            and not entry.converted
            and not entry.holdout
            and run.at <= entry.goal_until
        ):
            journey_record.setdefault("goals", {})[entry.entry_id] = {
                "version": entry.version,
                "until": entry.goal_until,
                "variants": dict(_split_variants(self._journey_of(entry), entry)),
            }

    # --- steps -----------------------------------------------------------------------------

    def _advance(
        self, run: _Run, entry: EntryState, step_id: str | None, resume_send: bool = False
    ) -> None:
        """Runs steps from `step_id` until one waits (delay, wait_for, paths, quiet hours) or
        the entry ends."""
        journey = self._journey_of(entry)
        for _ in range(MAX_STEPS_PER_INPUT):
            if entry.entry_id not in run.state.entries(entry.journey_id):
                return  # finished meanwhile
            if self._exits(run, entry, journey):
                return
            if step_id is None or step_id == NO_ACTION:
                self._finish(
                    run,
                    entry,
                    "completed",
                    "no_action" if step_id == NO_ACTION else "end of journey",
                )
                return
            step = journey.steps[step_id]
            match step:
                case MessageStep():
                    if self.deployment(journey.id, journey.version).status == PAUSED:
                        self._park(run, entry, step)
                        return
                    if not self._message(run, entry, journey, step, resume_send):
                        return
                    resume_send = False
                    step_id = step.next
                case DelayStep():
                    self._schedule(run, entry, step.id, self._delay_until(run, step), "delay")
                    return
                case BranchStep():
                    answer = step.condition.test(self._view(run.state), run.at, entry.entered_at)
                    said = "yes" if answer else "no"
                    reason = f"{said}: {step.condition.describe()}"
                    self._analytics(run, entry, step.id, "decided", reason)
                    step_id = step.yes if answer else step.no
                case WaitForStep():
                    entry.waiting_for = step.id
                    self._schedule(run, entry, step.id, run.at + step.timeout, "wait_timeout")
                    return
                case PathsStep():
                    for path in step.paths:
                        self._schedule(run, entry, step.id, run.at + path.delay, "path", path.id)
                    return
                case SplitStep():
                    roll = stable_percent(
                        "split",
                        journey.id,
                        str(journey.version),
                        run.state.user_id,
                        entry.entry_id,
                        step.id,
                    )
                    total, chosen = 0.0, step.branches[-1]
                    for branch in step.branches:
                        total += branch.percent
                        if roll < total:
                            chosen = branch
                            break
                    entry.winners[step.id] = chosen.id
                    self._analytics(
                        run,
                        entry,
                        step.id,
                        "path_chosen",
                        f"split branch {chosen.id}",
                        ((step.id, chosen.id),),
                    )
                    step_id = chosen.next
                case ExitStep():
                    self._finish(run, entry, "exited", f"exit step {step.id}")
                    return
        raise ValueError(f"journey {journey.key} ran more than {MAX_STEPS_PER_INPUT} steps at once")

    def _delay_until(self, run: _Run, step: DelayStep) -> datetime:
        if step.duration is not None:
            return run.at + step.duration
        zone = zone_of(run.state)
        if step.until_time is not None:
            local = run.at.astimezone(zone)
            candidate = local.replace(
                hour=step.until_time.hour, minute=step.until_time.minute, second=0, microsecond=0
            )
            if candidate <= local:
                candidate = (local + timedelta(days=1)).replace(
                    hour=step.until_time.hour,
                    minute=step.until_time.minute,
                    second=0,
                    microsecond=0,
                )
            return to_millis(candidate)
        value = run.state.attributes.get(step.until_attribute or "")
        return value if isinstance(value, datetime) and value > run.at else run.at

    def _message(
        self, run: _Run, entry: EntryState, journey: Journey, step: MessageStep, resume: bool
    ) -> bool:
        """Sends, suppresses (and goes on) or defers to the end of quiet hours (and waits)."""
        state, at = run.state, run.at
        if state.subscriptions.get(step.channel) is False:
            self._analytics(run, entry, step.id, "suppressed", f"unsubscribed from {step.channel}")
            return True
        if step.topic is not None and state.topics.get(step.topic) is False:
            self._analytics(run, entry, step.id, "suppressed", f"unsubscribed from {step.topic}")
            return True
        for cap in (*self.rules.frequency_caps, *journey.rules.frequency_caps):
            if cap.channel != step.channel:
                continue
            recent = [
                s for s in state.sends if s["channel"] == cap.channel and s["at"] > at - cap.window
            ]
            if len(recent) >= cap.limit:
                self._analytics(
                    run,
                    entry,
                    step.id,
                    "suppressed",
                    f"frequency cap {cap.limit} per {format_duration(cap.window)} on {cap.channel}",
                )
                return True
        quiet = journey.rules.quiet_hours or self.rules.quiet_hours
        if quiet is not None and not resume:
            local = at.astimezone(zone_of(state))
            if quiet.contains(local.time().replace(tzinfo=None)):
                end = local.replace(
                    hour=quiet.end.hour, minute=quiet.end.minute, second=0, microsecond=0
                )
                if end <= local:
                    end += timedelta(days=1)
                self._schedule(run, entry, step.id, to_millis(end), "quiet_hours")
                self._analytics(
                    run, entry, step.id, "waited", f"quiet hours until {quiet.end:%H:%M}"
                )
                return False
        attribute = ADDRESS_ATTRIBUTE[step.channel]
        address = state.attributes.get(attribute) if attribute else None
        run.effects.append(
            Send(
                dispatch_id=dispatch_id(
                    journey.id, journey.version, state.user_id, entry.entry_id, step.id
                ),
                journey_id=journey.id,
                journey_version=journey.version,
                user_id=state.user_id,
                entry_id=entry.entry_id,
                step_id=step.id,
                channel=step.channel,
                template_id=step.template,
                locale=state.locale,
                variables=send_variables(state, entry, step),
                address=str(address) if address is not None else None,
                send_at=at,
                branches=branch_claims(state.user_id, entry),
                webhook=step.webhook,
                topic=step.topic,
                transactional=journey.transactional,
            )
        )
        if step.digest is not None:
            restart(state, journey.id, step, at)
        history = state.received.setdefault(step.template, {"count": 0, "last_at": at})
        history["count"] += 1
        history["last_at"] = at
        state.sends = [*state.sends, {"channel": step.channel, "at": at}][-SENDS_KEPT:]
        return True

    # --- timers and analytics --------------------------------------------------------------

    def _schedule(
        self,
        run: _Run,
        entry: EntryState,
        step_id: str,
        due: datetime,
        purpose: str,
        path_id: str | None = None,
        instance: str | None = None,
    ) -> None:
        """`path_id` or `instance` tell apart the timers one step sets for one entry."""
        suffix = f":{path_id or instance}" if path_id or instance else ""
        timer = PendingTimer(
            timer_id=f"{entry.journey_id}:{entry.version}:{run.state.user_id}:{entry.entry_id}:{step_id}:{purpose}{suffix}",
            due_at=to_millis(due),
            journey_id=entry.journey_id,
            entry_id=entry.entry_id,
            step_id=step_id,
            purpose=purpose,
            path_id=path_id,
        )
        run.state.timers = [*run.state.timers, timer]
        run.effects.append(
            ScheduleTimer(
                timer.timer_id,
                run.state.user_id,
                timer.due_at,
                entry.journey_id,
                entry.entry_id,
                step_id,
            )
        )

    def _cancel_timers(self, run: _Run, entry: EntryState, purpose: str | None = None) -> None:
        cancelled = [
            t for t in run.state.timers_of(entry) if purpose is None or t.purpose == purpose
        ]
        ids = {t.timer_id for t in cancelled}
        run.state.timers = [t for t in run.state.timers if t.timer_id not in ids]
        for timer in cancelled:
            run.effects.append(
                CancelTimer(
                    timer.timer_id,
                    run.state.user_id,
                    entry.journey_id,
                    entry.entry_id,
                    timer.step_id,
                )
            )

    @staticmethod
    def _analytics(
        run: _Run,
        entry: EntryState,
        step_id: str | None,
        event: str,
        reason: str | None,
        variants: tuple[tuple[str, str], ...] = (),
    ) -> None:
        run.effects.append(
            Analytics(
                event,
                entry.journey_id,
                entry.version,
                run.state.user_id,
                entry.entry_id,
                step_id,
                run.at,
                reason,
                entry.holdout,
                variants,
            )
        )

    def _journey_of(self, entry: EntryState) -> Journey:
        journey = self.versions.get((entry.journey_id, entry.version))
        if journey is None:
            raise VersionMissing(entry.journey_id, entry.version)
        return journey


def _refused(run: _Run, journey: Journey, entry_id: str, event: str, reason: str) -> None:
    """A refusal to enter on the timeline, under the entry id the entry would have had."""
    run.effects.append(
        Analytics(
            event, journey.id, journey.version, run.state.user_id, entry_id, None, run.at, reason
        )
    )


def _waiting_at(state: UserState) -> dict[tuple[str, str, str], EntryState]:
    """(journey, entry, step) -> entry, for each step an entry waits at on a timer (a delay, a
    wait's timeout, a path, quiet hours, a pause); an entry that finished and only waits for
    its goal window waits at no step."""
    found: dict[tuple[str, str, str], EntryState] = {}
    for timer in state.timers:
        entry = state.entries(timer.journey_id).get(timer.entry_id)
        if entry is not None and timer.purpose != "goal_window":
            found[(timer.journey_id, timer.entry_id, timer.step_id)] = entry
    return found


def _waiting_changes(before: UserState, run: _Run) -> None:
    """`waiting` records for each step an entry began or stopped waiting at in this transition,
    so "waiting now" is a count kept as things happen (app/engine/figures.py), not a scan of
    the users."""
    was, now = _waiting_at(before), _waiting_at(run.state)
    changes = [(key, was[key], LEFT) for key in was.keys() - now.keys()]
    changes += [(key, now[key], ARRIVED) for key in now.keys() - was.keys()]
    for (_, _, step_id), entry, change in sorted(changes, key=lambda c: (c[2] != LEFT, c[0])):
        JourneyEngine._analytics(run, entry, step_id, WAITING, change)


def _entry_id(run: _Run) -> str:
    """The entry time, made unique by the input that caused the entry: two entries at the same
    millisecond (re-entry every time) must not share dispatch ids, and a replay must. Computed
    only for an entry or a refusal that is recorded, not for every trigger refused again."""
    at = run.at
    stamp = at.strftime("%Y%m%dT%H%M%S") + f"{at.microsecond // 1000:03d}Z"
    return f"{stamp}-{hashlib.sha256(run.input_id.encode()).hexdigest()[:8]}"
