"""Random user-event streams (records valid against topics/user-events.json) over several users
in different time zones (some with DST changes near the events, now and then one misspelt) and
locales: profile and attribute updates, subscription changes, the events the case's journeys
enter on, wait for, exit on and convert on (with matching properties some of the time), an
event delivered twice, and events out of order (a record published after a later one of the
same user); and delivery events about the messages sent, for journeys that wait or branch on
them."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from app.callbacks.events import BOUNCE_TYPES
from app.dispatch.record import utc_text
from app.engine import Journey, JourneyEngine, ScheduleTimer, Send, UserEvent
from app.engine.definitions import BranchStep, EventEntry, WaitForStep
from app.engine.simulator import Simulator
from tests.generated.journeys import (
    EVENTS,
    MESSAGE_EVENTS,
    PLANS,
    PLATFORMS,
    ROLES,
    TOPICS,
    properties,
    satisfying,
)
from tests.generated.scale import TimeScale

ZONES = (
    "UTC",
    "Europe/London",
    "Europe/Paris",
    "America/New_York",
    "America/Los_Angeles",
    "Australia/Sydney",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "America/Sao_Paulo",
    "Pacific/Chatham",
)
UNKNOWN_ZONE = "America/LosAngeles"
# How long after a send its user's unsubscribe can still stop it live: the sender checks the
# stored subscriptions right before delivering (the send buffer's hold, the sender's fetch and its
# retries), which the simulator, deciding at the send's time, cannot know.
UNSUBSCRIBE_RACE = timedelta(seconds=30)
LOCALES = ("en", "en-GB", "fr-FR", "fr", "de", "de_AT", "pt-BR", "es")
CHANNELS = ("email", "push", "sms", "webhook")


@dataclass(frozen=True)
class User:
    user_id: str
    timezone: str | None  # None: the user never says, and is in UTC
    locale: str | None


def users(rng: random.Random, prefix: str) -> list[User]:
    return [
        User(
            f"{prefix}-u{i}",
            rng.choice(ZONES) if rng.random() < 0.85 else None,
            rng.choice(LOCALES) if rng.random() < 0.85 else None,
        )
        for i in range(rng.randint(3, 7))
    ]


def _targets(journeys: list[Journey]) -> list[tuple[str, dict[str, Any]]]:
    """(event, properties) the journeys react to: entries, wait_for steps, exits, goals
    (delivery events come from `add_message_events`)."""
    targets = []
    for journey in journeys:
        if isinstance(journey.entry, EventEntry):
            targets += [(journey.entry.event, journey.entry.properties)] * 3
            if journey.entry.of_event:
                targets.append((journey.entry.of_event, {}))
        for step in journey.steps.values():
            if isinstance(step, WaitForStep) and step.event not in MESSAGE_EVENTS:
                targets.append((step.event, step.properties))
        targets += [(x.event, x.properties) for x in journey.exit_events]
        if journey.goal is not None:
            targets.append((journey.goal.event, journey.goal.properties))
    return targets


def _attribute_update(rng: random.Random, scale: TimeScale, at: datetime) -> dict[str, Any]:
    name = rng.choice(("plan", "role", "platform", "lifetime_value", "trial_ends_at", "score"))
    value: Any = {
        "plan": lambda: rng.choice(PLANS),
        "role": lambda: rng.choice((*ROLES, None)),  # null removes the attribute
        "platform": lambda: rng.choice(PLATFORMS),
        "lifetime_value": lambda: rng.randint(0, 1000),
        "trial_ends_at": lambda: utc_text(scale.ahead(rng, at)),
        "score": lambda: rng.choice((None, 1.5, "high", [1, 2])),
    }[name]()
    return {name: value}


def _profile(rng: random.Random, scale: TimeScale, user: User, at: datetime) -> dict[str, Any]:
    """Addresses, a name for the templates, and what conditions read; some users lack some."""
    profile: dict[str, Any] = {}
    optional = {
        "email": (0.9, f"{user.user_id}@x.test"),
        "push_token": (0.8, f"tok-{user.user_id}"),
        "phone": (0.7, f"+1555{rng.randrange(10**7):07d}"),
        "first_name": (0.85, user.user_id.split("-")[-1].capitalize()),
        "role": (0.7, rng.choice(ROLES)),
        "plan": (0.7, rng.choice(PLANS)),
        "platform": (0.6, rng.choice(PLATFORMS)),
        "lifetime_value": (0.6, rng.randint(0, 1000)),
        "trial_started_at": (0.6, utc_text(at - scale.gap(rng))),
        "trial_ends_at": (0.5, utc_text(scale.ahead(rng, at))),
    }
    for name, (chance, value) in optional.items():
        if rng.random() < chance:
            profile[name] = value
    return profile


def generate_events(
    rng: random.Random,
    scale: TimeScale,
    base: datetime,
    journeys: list[Journey],
    people: list[User],
) -> list[dict[str, Any]]:
    targets = _targets(journeys)
    stream: list[dict[str, Any]] = []
    for user in people:
        at = base + timedelta(seconds=rng.randint(0, scale.start_seconds))
        first: dict[str, Any] = {
            "event_id": f"{user.user_id}-e0",
            "user_id": user.user_id,
            "name": rng.choice(("signed_up", "signed_up", "opened_app", *EVENTS)),
            "at": utc_text(at),
            "attributes": _profile(rng, scale, user, at),
        }
        if user.timezone:
            first["timezone"] = user.timezone
        if user.locale:
            first["locale"] = user.locale
        stream.append(first)
        for k in range(1, rng.randint(2, 6)):
            at += scale.gap(rng)
            name, wanted = rng.choice(targets) if targets and rng.random() < 0.75 else ("", {})
            record: dict[str, Any] = {
                "event_id": f"{user.user_id}-e{k}",
                "user_id": user.user_id,
                "name": name or rng.choice(EVENTS),
                "at": utc_text(at),
            }
            if wanted and rng.random() < 0.65:
                record["properties"] = satisfying(rng, wanted)
            elif rng.random() < 0.4:
                record["properties"] = properties(rng)
            if rng.random() < 0.3:
                record["attributes"] = _attribute_update(rng, scale, at)
            if rng.random() < 0.15:
                record["subscriptions"] = {rng.choice(CHANNELS): rng.random() < 0.3}
            # Topic subscription changes, from a generator of their own so the rest stays.
            topic_rng = random.Random(f"{record['event_id']}:topics")
            if topic_rng.random() < 0.1:
                record["topics"] = {topic_rng.choice(TOPICS): topic_rng.random() < 0.3}
            if rng.random() < 0.05:
                # Now and then a zone no machine knows: the event applies, the zone is refused.
                record["timezone"] = rng.choice((*ZONES, UNKNOWN_ZONE))
            if rng.random() < 0.05:
                record["locale"] = rng.choice(LOCALES)
            stream.append(record)
    stream.sort(key=lambda r: r["at"])  # the same instant keeps the users' order
    _disorder(rng, stream)
    return stream


def _disorder(rng: random.Random, stream: list[dict[str, Any]]) -> None:
    """Per user, maybe one record published after the next one of that user (out of order), and
    maybe one record published twice (a redelivery: same id, same content, later)."""
    positions: dict[str, list[int]] = defaultdict(list)
    for i, record in enumerate(stream):
        positions[record["user_id"]].append(i)
    for user_positions in positions.values():
        if len(user_positions) > 2 and rng.random() < 0.25:
            k = rng.randrange(1, len(user_positions) - 1)
            i, j = user_positions[k], user_positions[k + 1]
            stream[i], stream[j] = stream[j], stream[i]
    for user_positions in positions.values():
        if rng.random() < 0.2:
            i = rng.choice(user_positions)
            stream.insert(rng.randint(i + 1, len(stream)), dict(stream[i]))


def space_from_timers(
    engine: JourneyEngine, stream: list[dict[str, Any]], margin: timedelta, rounds: int = 200
) -> list[dict[str, Any]]:
    """The stream with events moved later until no event comes within `margin` of a timer of the
    same user that an earlier input set, and no unsubscribe within UNSUBSCRIBE_RACE after a send
    of its user. A live pipeline cannot order an event and a timer that close the way the
    simulator does (timers first at equal times; in the workers the two race), so live cases
    keep them apart. A moved event moves the user's later events (in time, after it
    in the stream) with it, and its repeats."""
    stream = [dict(record) for record in stream]
    for _ in range(rounds):
        clash = _first_clash(engine, stream, margin)
        if clash is None:
            return stream
        index, shift = clash
        user, at = stream[index]["user_id"], _time(stream[index])
        moved = {stream[index]["event_id"]} | {
            r["event_id"] for r in stream[index:] if r["user_id"] == user and _time(r) > at
        }
        for record in stream:
            if record["event_id"] in moved:
                record["at"] = utc_text(_time(record) + shift)
    raise ValueError(f"events still within {margin} of timers after {rounds} rounds")


def _first_clash(
    engine: JourneyEngine, stream: list[dict[str, Any]], margin: timedelta
) -> tuple[int, timedelta] | None:
    """(stream index of the first event too close to a timer set before it, or of an unsubscribe
    too soon after a send made before it, and how far to move it), or None. Inputs are ranked
    in the simulator's order: event k has rank k, a timer fired just before it rank k - 0.5.
    Only the first copy of a redelivered event counts."""
    order = sorted(range(len(stream)), key=lambda i: _time(stream[i]))
    simulator = Simulator(engine)
    timers: dict[str, tuple[str, datetime, float]] = {}  # id -> (user, due, setter's rank)
    effects_before: list[int] = []  # per rank: how many effects inputs ranked before it made
    for rank, index in enumerate(order):
        event = UserEvent.from_record(stream[index])
        simulator.run_until(event.at)
        before = len(simulator.effects)
        effects_before.append(before)
        _note_timers(simulator, timers, 0, before, rank - 0.5)
        simulator.feed([event])
        _note_timers(simulator, timers, before, len(simulator.effects), rank)
    seen: set[str] = set()
    for rank, index in enumerate(order):
        record = stream[index]
        if record["event_id"] in seen:
            continue  # a redelivery: the engine ignores it, whatever its order with timers
        seen.add(record["event_id"])
        at = _time(record)
        for user_id, due, setter in timers.values():
            if user_id == record["user_id"] and setter < rank and abs(due - at) < margin:
                return index, due + margin - at
        if _unsubscribes(record):
            for item in simulator.effects[: effects_before[rank]]:
                send = item.effect
                if (
                    isinstance(send, Send)
                    and send.user_id == record["user_id"]
                    and at - UNSUBSCRIBE_RACE < send.send_at <= at
                ):
                    return index, send.send_at + UNSUBSCRIBE_RACE - at
    return None


def _unsubscribes(record: dict[str, Any]) -> bool:
    """Whether an event turns off a channel or a topic of its user."""
    subscriptions, topics = record.get("subscriptions") or {}, record.get("topics") or {}
    return False in [*subscriptions.values(), *topics.values()]


def _note_timers(
    simulator: Simulator,
    timers: dict[str, tuple[str, datetime, float]],
    start: int,
    end: int,
    setter: float,
) -> None:
    for item in simulator.effects[start:end]:
        effect = item.effect
        if isinstance(effect, ScheduleTimer) and effect.timer_id not in timers:
            timers[effect.timer_id] = (effect.user_id, effect.due_at, setter)


def _time(record: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(record["at"])


def add_message_events(
    rng: random.Random,
    scale: TimeScale,
    engine: JourneyEngine,
    stream: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """The stream with delivery events (`message_opened` and the others) about some of the
    messages the simulator sends for it (up to a gap after its last event), soon after each
    send (within a sixth of the largest gap: a wait for one is often still on), carrying the
    properties the API publishes them with. Only for journeys that react to them: the
    streams of other cases stay."""
    wanted = sorted(
        {name for journey in engine.versions.values() for name in _message_events_of(journey)}
    )
    if not wanted:
        return stream
    # Sends up to one gap after the last event: the stream's span stays about what it was.
    simulator = Simulator(engine)
    simulator.feed(UserEvent.from_record(record) for record in stream)
    simulator.finish(timedelta(seconds=scale.gap_seconds[1]))
    added = []
    for n, item in enumerate(e for e in simulator.effects if isinstance(e.effect, Send)):
        send = item.effect
        if rng.random() < 0.5:
            continue
        soon = timedelta(seconds=rng.randint(0, max(2, scale.gap_seconds[1] // 6)))
        event = rng.choice(wanted) if rng.random() < 0.7 else rng.choice(MESSAGE_EVENTS)
        properties: dict[str, Any] = {
            "dispatch_id": send.dispatch_id,
            "journey_id": send.journey_id,
            "journey_version": send.journey_version,
            "step_id": send.step_id,
            "channel": send.channel,
            "provider": "generated",
        }
        if event == "message_bounced":
            properties["bounce_type"] = rng.choice(BOUNCE_TYPES)
        added.append(
            {
                "event_id": f"{send.user_id}-m{n}",
                "user_id": send.user_id,
                "name": event,
                "at": utc_text(item.at + soon),
                "properties": properties,
            }
        )
    merged = list(stream)
    for record in sorted(added, key=_time):
        later = [i for i, r in enumerate(merged) if _time(r) > _time(record)]
        merged.insert(later[0] if later else len(merged), record)
    return merged


def _message_events_of(journey: Journey) -> set[str]:
    """The delivery events the journey's wait_for and branch steps name."""
    names: set[str] = set()
    for step in journey.steps.values():
        if isinstance(step, WaitForStep) and step.event in MESSAGE_EVENTS:
            names.add(step.event)
        if isinstance(step, BranchStep):
            names |= {name for name in MESSAGE_EVENTS if name in step.condition.describe()}
    return names
