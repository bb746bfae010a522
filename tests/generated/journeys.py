"""Random valid journey files and global rules files, as YAML (or JSON) text for the real loader.

A journey combines what the loader accepts: event entries (with property filters, with a window
after another event or a date attribute), attribute entries and, at the `sim` scale, schedules;
audiences, re-entry policies, holdouts, exit events and exit conditions, goals, quiet hours,
frequency caps and lifetimes; entry periods (`starts_at`, `ends_at`) and `enter_past_events`; and a
graph of delays (a duration, a time of day in the user's zone, a date attribute), messages on every
channel with templates that exist (some with a `digest`), nested yes/no branches over conditions
of every kind, `wait_for`, `paths` and `split` (also one decision after another, and two splits in
one entry) and `exit` steps.

At the `live` scale a time of day (a delay's, or the end of quiet hours) is the next minute about
10 to 50 seconds after the base time in the zone of one of the case's users, so a live run sees
it come; users in other zones wait until that time of day comes round tomorrow.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from app.dispatch.record import utc_text
from app.engine.conditions import property_filter as property_filter_condition
from app.engine.definitions import CHANNELS
from app.engine.engine import EPOCH
from tests.generated.scale import TimeScale

TEMPLATES = tuple(
    sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "templates").glob("*.yaml"))
)
# The template that renders a message's `digest` (whose steps always get one).
DIGEST_TEMPLATE = "weekly_summary"
TOPICS = ("product_updates", "weekly_summary")
# Event names the generated journeys and streams share, so one case's events can also enter
# another case's journeys (the oracle covers that: it simulates every journey deployed).
ENTRY_EVENTS = ("signed_up", "added_class", "purchased", "added_to_cart", "viewed_product")
OTHER_EVENTS = ("added_student", "invited_parents", "opened_app", "account_deleted")
EVENTS = ENTRY_EVENTS + OTHER_EVENTS
# Delivery events (see "Delivery callbacks" in the README), about a message a journey sent.
MESSAGE_EVENTS = (
    "message_delivered",
    "message_opened",
    "message_clicked",
    "message_bounced",
    "message_complained",
    "message_unsubscribed",
)
PROPERTY_VALUES: dict[str, tuple[Any, ...]] = {
    "plan": ("free", "pro"),
    "source": ("ios", "web"),
    "sku": ("lamp", "rug", "desk"),
    "quantity": (1, 2, 3),
}
PLANS = ("free", "pro", "team")
ROLES = ("teacher", "parent")
PLATFORMS = ("ios", "web", "android")
# Datetime attributes: since_attribute conditions, entry windows, until_attribute delays.
DATE_ATTRIBUTES = ("trial_started_at", "trial_ends_at")
ENTRY_ATTRIBUTES = ("plan", "role", "platform")
CRONS = ("0 9 * * *", "30 2 * * *", "0 8 * * MON", "15 */6 * * *")
MAX_STEPS = 12


# Property filters beyond equality, per property: each matches some of its PROPERTY_VALUES.
PROPERTY_OPERATORS: dict[str, tuple[dict[str, Any], ...]] = {
    "plan": ({"in": ["pro", "team"]}, {"not_equals": "free"}),
    "source": ({"exists": True}, {"prefix": "i"}),
    "sku": ({"in": ["lamp", "rug"]}, {"prefix": "la"}, {"contains": "es"}),
    "quantity": ({"gte": 2}, {"lt": 3}, {"in": [1, 3]}),
}


def properties(rng: random.Random) -> dict[str, Any]:
    names = rng.sample(sorted(PROPERTY_VALUES), rng.randint(1, 2))
    return {name: rng.choice(PROPERTY_VALUES[name]) for name in names}


def property_filter(rng: random.Random) -> dict[str, Any]:
    """A journey's filter on an event's properties: values to equal, or operators."""
    names = rng.sample(sorted(PROPERTY_VALUES), rng.randint(1, 2))
    return {
        name: rng.choice(PROPERTY_OPERATORS[name])
        if rng.random() < 0.5
        else rng.choice(PROPERTY_VALUES[name])
        for name in names
    }


def satisfying(rng: random.Random, wanted: dict[str, Any]) -> dict[str, Any]:
    """Event properties that pass the filter `wanted` (the engine's own predicate decides)."""
    chosen = {}
    for name, spec in wanted.items():
        test = property_filter_condition({name: spec})
        values = [v for v in PROPERTY_VALUES[name] if test.test({"properties": {name: v}}, EPOCH)]
        chosen[name] = rng.choice(values)
    return chosen


class _Journey:
    """Builds one journey's document: the step graph depth first, each step before its
    successors (so the file's first step is the start), ids unique within the journey."""

    def __init__(
        self,
        rng: random.Random,
        scale: TimeScale,
        base: datetime,
        zones: list[str],
        journey_id: str,
    ) -> None:
        self.rng = rng
        self.scale = scale
        self.base = base
        self.zones = zones
        self.id = journey_id
        # Transactional now and then (its messages take no topic), from a generator of its own.
        self.transactional = random.Random(f"{journey_id}:transactional").random() < 0.15
        self.topic_conditions = 0  # how many subscribed conditions so far, to seed each
        self.steps: dict[str, dict[str, Any]] = {}
        # Steps whose successors are all built: a link to one of them cannot make a cycle.
        self.done: set[str] = set()

    # --- pieces ----------------------------------------------------------------------------

    def clock(self, earliest: int, latest: int) -> str:
        """A time of day: at the live scale the next whole minute `earliest`..`latest` seconds
        after the base time in one user's zone; at the sim scale a morning, an evening or a
        time DST skips or repeats."""
        if not self.scale.live:
            return self.rng.choice(("08:00", "09:30", "18:00", "02:30", "01:15", "23:45"))
        while True:
            zone = ZoneInfo(self.rng.choice(self.zones))
            moment = (self.base + timedelta(seconds=self.rng.randint(earliest, latest))).astimezone(
                zone
            )
            minute = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
            if self._comes_in_or_past_the_live_window(minute.time()):
                return f"{minute:%H:%M}"

    def _comes_in_or_past_the_live_window(self, local: time) -> bool:
        """Whether `local` comes, in every user's zone, within `settle` of the base time or
        `far` after it: zones 15 minutes apart (Asia/Kolkata, Asia/Kathmandu) would see it come
        in between."""
        for name in set(self.zones):
            now = self.base.astimezone(ZoneInfo(name))
            comes = datetime.combine(now.date(), local, now.tzinfo)
            if comes <= now:
                comes += timedelta(days=1)
            wait = comes - now
            if self.scale.settle < wait < self.scale.far:
                return False
        return True

    def quiet_hours(self) -> dict[str, str]:
        if not self.scale.live:
            start, end = self.rng.choice(
                (("22:00", "08:00"), ("01:00", "03:00"), ("12:00", "13:30"), ("20:00", "07:00"))
            )
            return {"start": start, "end": end}
        end = self.clock(0, 30)
        hours, minutes = map(int, end.split(":"))
        started = (hours * 60 + minutes - self.rng.randint(5, 120)) % (24 * 60)
        return {"start": f"{started // 60:02d}:{started % 60:02d}", "end": end}

    def frequency_caps(self) -> list[dict[str, Any]]:
        return [
            {
                "channel": channel,
                "limit": self.rng.randint(1, 2),
                "window": self.scale.window(self.rng),
            }
            for channel in self.rng.sample(CHANNELS, self.rng.randint(1, 2))
        ]

    def condition(self, depth: int = 0, in_entry: bool = True) -> dict[str, Any]:
        """A condition; `in_entry` when it is evaluated inside an entry (branches, paths, exit
        conditions), where `since_entry` forms have a meaning (not in an audience)."""
        rng = self.rng
        kinds = ["attribute", "event", "since", "received", "subscribed"]
        if depth < 2:
            kinds += ["all", "any", "not"]
        if in_entry:
            kinds += ["since_entry"]
        kind = rng.choice(kinds)
        if kind == "since_entry":
            if rng.random() < 0.5:
                return {"event": rng.choice(EVENTS), "since_entry": True}
            return {"attribute": rng.choice(ENTRY_ATTRIBUTES), "changed_since_entry": True}
        if kind == "attribute":
            return rng.choice(
                (
                    {"attribute": "plan", "equals": rng.choice(PLANS)},
                    {"attribute": "plan", "contains": rng.choice(("ro", "ea", "e"))},
                    {"attribute": "platform", "prefix": rng.choice(("i", "an", "web"))},
                    {"attribute": "plan", "not_equals": "free"},
                    {"attribute": "plan", "in": rng.sample(PLANS, 2)},
                    {"attribute": "role", "exists": rng.random() < 0.5},
                    {"attribute": "platform", "equals": rng.choice(PLATFORMS)},
                    {"attribute": "lifetime_value", rng.choice(("gt", "gte")): rng.randint(0, 900)},
                    {"attribute": "lifetime_value", rng.choice(("lt", "lte")): rng.randint(0, 900)},
                )
            )
        if kind == "event":
            event = rng.choice(EVENTS)
            return rng.choice(
                (
                    {"event": event, "performed_at_least": rng.randint(1, 2)},
                    {"event": event, "within": self.scale.window(rng)},
                    {"event": event, "never": True},
                )
            )
        if kind == "since":
            if rng.random() < 0.5:
                return {"since_event": rng.choice(EVENTS), "at_least": self.scale.window(rng)}
            return {"since_attribute": "trial_started_at", "at_least": self.scale.window(rng)}
        if kind == "received":
            received: dict[str, Any] = {"received": rng.choice(TEMPLATES)}
            if rng.random() < 0.5:
                received["within"] = self.scale.window(rng)
            return received
        if kind == "subscribed":
            channel = rng.choice(CHANNELS)
            # Half the time a topic instead, from a generator of its own: the seed's other
            # choices stay.
            self.topic_conditions += 1
            topic_rng = random.Random(f"{self.id}:subscribed:{self.topic_conditions}")
            if topic_rng.random() < 0.5:
                return {"subscribed_topic": topic_rng.choice(TOPICS)}
            return {"subscribed": channel}
        if kind == "not":
            return {"not": self.condition(depth + 1, in_entry)}
        return {kind: [self.condition(depth + 1, in_entry) for _ in range(rng.randint(1, 3))]}

    def entry_limits(self) -> dict[str, int]:
        """At the sim scale, limits a case's few users reach. At the live scale, limits no case
        reaches: which users take the last slots of a minute follows the order entries reach
        Redis, which the live harness cannot make the simulator's (users on other partitions
        race), so live cases check the slots are asked and counted, not who is refused."""
        rng = self.rng
        if self.scale.live:
            options = ({"per_minute": 500}, {"total": 1000}, {"per_minute": 400, "total": 900})
        else:
            options = (
                {"per_minute": rng.randint(1, 2)},
                {"total": rng.randint(1, 4)},
                {"per_minute": rng.randint(1, 3), "total": rng.randint(2, 6)},
            )
        return dict(rng.choice(options))

    # --- steps -----------------------------------------------------------------------------

    def new_id(self, kind: str) -> str:
        step_id = f"{kind}{len(self.steps)}"
        self.steps[step_id] = {}  # reserved: the step comes before its successors
        return step_id

    def node(self, depth: int, decision: bool = False) -> str | None:
        """A step id, `no_action` or None (the end of the journey). Right after a decision,
        another decision is likely: paths after a split, two splits in one entry."""
        rng = self.rng
        if len(self.steps) >= MAX_STEPS or depth > 6:
            end = rng.choice((None, "no_action", "message"))
            return self.message(depth, end=True) if end == "message" else end
        if self.done and rng.random() < 0.1:
            return rng.choice(sorted(self.done))  # a join: two ways lead to one step
        weights = {
            "message": 3.0,
            "delay": 2.0,
            "branch": 1.5,
            "wait_for": 1.5,
            "paths": 3.0 if decision else 1.2,
            "split": 3.0 if decision else 1.0,
            "exit": 0.3,
            "end": 0.6 if depth else 0.0,
        }
        kind = rng.choices(list(weights), list(weights.values()))[0]
        if kind == "end":
            return rng.choice((None, "no_action"))
        return getattr(self, kind)(depth)

    def link(self, step: dict[str, Any], key: str, target: str | None) -> None:
        if target is not None or self.rng.random() < 0.2:
            step[key] = target  # an explicit null ends the journey too

    def message(self, depth: int, end: bool = False) -> str:
        step_id = self.new_id("message")
        step: dict[str, Any] = {
            "type": "message",
            "channel": self.rng.choice(CHANNELS),
            "template": self.rng.choice(TEMPLATES),
        }
        if step["channel"] == "webhook":
            step.update(self.webhook_request(step_id))
        step.update(self.digest(step_id, step["template"]))
        topic_rng = random.Random(f"{self.id}:{step_id}:topic")
        if not self.transactional and topic_rng.random() < 0.5:
            step["topic"] = topic_rng.choice(TOPICS)
        if not end:
            self.link(step, "next", self.node(depth + 1))
        self.steps[step_id] = step
        self.done.add(step_id)
        return step_id

    def delay(self, depth: int) -> str:
        step_id = self.new_id("delay")
        kind = self.rng.choices(("duration", "until_time", "until_attribute"), (4, 1, 1))[0]
        step: dict[str, Any] = {"type": "delay"}
        if kind == "duration":
            step["duration"] = self.scale.duration(self.rng)
        elif kind == "until_time":
            step["until_time"] = self.clock(5, 40)
        else:
            step["until_attribute"] = "trial_ends_at"
        self.link(step, "next", self.node(depth + 1))
        self.steps[step_id] = step
        self.done.add(step_id)
        return step_id

    def branch(self, depth: int) -> str:
        step_id = self.new_id("branch")
        step = {"type": "branch", "if": self.condition()}
        step["if"] = self.message_condition(step_id) or step["if"]
        step["yes"] = self.node(depth + 1, decision=True) or "no_action"
        step["no"] = self.node(depth + 1, decision=True) or "no_action"
        self.steps[step_id] = step
        self.done.add(step_id)
        return step_id

    def wait_for(self, depth: int) -> str:
        step_id = self.new_id("wait")
        step: dict[str, Any] = {
            "type": "wait_for",
            "event": self.rng.choice(EVENTS),
            "timeout": self.scale.duration(self.rng),
        }
        if self.rng.random() < 0.3:
            step["properties"] = property_filter(self.rng)
        step.update(self.message_wait(step_id))
        self.link(step, "performed", self.node(depth + 1))
        self.link(step, "timed_out", self.node(depth + 1))
        self.steps[step_id] = step
        self.done.add(step_id)
        return step_id

    def paths(self, depth: int) -> str:
        step_id = self.new_id("paths")
        paths = []
        for k in range(self.rng.randint(1, 3)):
            path: dict[str, Any] = {"id": f"{step_id}-p{k}"}
            if self.rng.random() < 0.8:
                path["delay"] = self.scale.duration(self.rng)
            if self.rng.random() < 0.7:
                path["if"] = self.condition()
            target = self.node(depth + 1, decision=True)
            if target is not None:
                path["next"] = target
            paths.append(path)
        self.steps[step_id] = {"type": "paths", "paths": paths}
        self.done.add(step_id)
        return step_id

    def split(self, depth: int) -> str:
        step_id = self.new_id("split")
        count = self.rng.randint(2, 3)
        cuts = sorted(self.rng.sample(range(1, 100), count - 1))
        percents = [b - a for a, b in zip([0, *cuts], [*cuts, 100], strict=True)]
        if self.rng.random() < 0.2:
            percents = [*percents[:-1], percents[-1] - 0.5, 0.5]  # fractions, and a tiny branch
        branches = []
        for k, percent in enumerate(percents):
            branch: dict[str, Any] = {"id": f"{step_id}-b{k}", "percent": percent}
            target = self.node(depth + 1, decision=True)
            if target is not None:
                branch["next"] = target
            branches.append(branch)
        self.steps[step_id] = {"type": "split", "branches": branches}
        self.done.add(step_id)
        return step_id

    def exit(self, depth: int) -> str:
        step_id = self.new_id("exit")
        self.steps[step_id] = {"type": "exit"}
        self.done.add(step_id)
        return step_id

    # --- the journey -----------------------------------------------------------------------

    def entry(self) -> dict[str, Any]:
        rng = self.rng
        kinds = ["event"] * 6 + ["attribute"] + ([] if self.scale.live else ["schedule"])
        kind = rng.choice(kinds)
        if kind == "attribute":
            return {"attribute": rng.choice(ENTRY_ATTRIBUTES)}
        if kind == "schedule":
            return {"schedule": rng.choice(CRONS)}
        entry: dict[str, Any] = {"event": rng.choice(ENTRY_EVENTS)}
        if rng.random() < 0.35:
            entry["properties"] = property_filter(rng)
        if rng.random() < 0.25:
            entry["within"] = self.scale.window(rng)
            if rng.random() < 0.5:
                entry["of_event"] = rng.choice([e for e in EVENTS if e != entry["event"]])
            else:
                entry["of_attribute"] = "trial_started_at"
        return entry

    def message_wait(self, step_id: str) -> dict[str, Any]:
        """Now and then a wait for a delivery event instead: of the message a step before it
        sent (`message:`), or of any message of a step (`properties: {step_id: ...}`), or any.
        Drawn from a generator of its own, so the rest of a seed's case is what it was before."""
        rng = random.Random(f"{self.id}:{step_id}:message-event")
        if rng.random() < 0.7:
            return {}
        wait: dict[str, Any] = {"event": rng.choice(MESSAGE_EVENTS)}
        sent = sorted(step for step in self.done if step.startswith("message"))
        how = rng.choice(("message", "message", "properties", "any")) if sent else "any"
        if how == "message":
            wait["message"] = rng.choice(sent)
        elif how == "properties":
            wait["properties"] = {"step_id": rng.choice(sent)}
        return wait

    def message_condition(self, step_id: str) -> dict[str, Any] | None:
        """Now and then a decision on a delivery event (or None: the condition drawn stays).
        Drawn from a generator of its own, as `message_wait`."""
        rng = random.Random(f"{self.id}:{step_id}:message-event")
        if rng.random() < 0.8:
            return None
        event = rng.choice(MESSAGE_EVENTS)
        return rng.choice(
            (
                {"event": event, "performed_at_least": 1},
                {"event": event, "since_entry": True},
                {"event": event, "never": True},
            )
        )

    def webhook_request(self, step_id: str) -> dict[str, Any]:
        """Now and then a webhook step's own method, header and body template (a JSON body that
        still names the user, template and locale, which the differential test compares). The
        URL stays the sender's: the provider stub's port is known only at run time. Drawn from a
        generator of its own, so the rest of a seed's case is what it was before."""
        rng = random.Random(f"{self.id}:{step_id}:webhook")
        if rng.random() < 0.6:
            return {}
        return {
            "method": rng.choice(("POST", "PUT", "PATCH")),
            "headers": {"X-Journeys-Case": self.id},
            "body": (
                '{"user_id": {{ user_id | tojson }},'
                ' "template": {{ message.template | tojson }},'
                ' "locale": {{ message.locale | tojson }},'
                ' "subject": {{ message.subject | tojson }}}'
            ),
        }

    def digest(self, step_id: str, template: str) -> dict[str, Any]:
        """A message's `digest` of some of the case's events: always with the weekly summary's
        template, which lists it (so the differential test compares its counts and latest
        events in the text the provider receives), now and then with another. Drawn from a
        generator of its own, so the rest of a seed's case is what it was before."""
        rng = random.Random(f"{self.id}:{step_id}:digest")
        if template != DIGEST_TEMPLATE and rng.random() < 0.8:
            return {}
        names = rng.sample(EVENTS, rng.randint(1, 3))
        return {"digest": {"events": names, "latest": rng.randint(0, 4)}}

    def entry_period(self) -> dict[str, Any]:
        """`starts_at` and `ends_at` around the case's events (entries only between them), and
        `enter_past_events`. Drawn from a generator of their own, so the rest of a seed's case
        is what it was before these options existed."""
        rng = random.Random(f"{self.id}:entry-period")
        live = self.scale.live
        period: dict[str, Any] = {}
        if rng.random() < 0.15:
            late = (
                timedelta(seconds=rng.randint(2, 8))
                if live
                else timedelta(hours=rng.randint(1, 12))
            )
            period["starts_at"] = utc_text(self.base + late)
        if rng.random() < 0.15:
            early = (
                timedelta(seconds=rng.randint(10, 60))
                if live
                else timedelta(hours=rng.randint(12, 72))
            )
            period["ends_at"] = utc_text(self.base + early)
        if rng.random() < 0.2:
            period["enter_past_events"] = rng.random() < 0.7
        return period

    def document(self) -> dict[str, Any]:
        rng = self.rng
        doc: dict[str, Any] = {"id": self.id, "version": 1}
        if rng.random() < 0.5:
            doc["name"] = f"Generated journey {self.id}"
        doc["entry"] = self.entry()
        if rng.random() < 0.3:
            doc["audience"] = self.condition(1, in_entry=False)
        if rng.random() < 0.25:
            doc["entry_limits"] = self.entry_limits()
        policy = rng.choice(("once", "every_time", "cooldown", None))
        if policy == "cooldown":
            doc["re_entry"] = {"cooldown": self.scale.window(rng)}
        elif policy is not None:
            doc["re_entry"] = policy
        if rng.random() < 0.3:
            doc["holdout"] = rng.choice((10, 25, 50, 12.5))
        exits: list[dict[str, Any]] = []
        for _ in range(rng.choice((0, 0, 1, 2))):
            if rng.random() < 0.6:
                exit_event: dict[str, Any] = {"event": rng.choice(EVENTS)}
                if rng.random() < 0.3:
                    exit_event["properties"] = property_filter(rng)
                exits.append(exit_event)
            else:
                exits.append({"condition": self.condition(1)})
        if exits:
            doc["exit_when"] = exits
        if rng.random() < 0.4:
            doc["goal"] = {"event": rng.choice(EVENTS), "within": self.scale.window(rng)}
            if rng.random() < 0.3:
                doc["goal"]["properties"] = property_filter(rng)
            if rng.random() < 0.5:
                doc["goal"]["exit_on_conversion"] = rng.random() < 0.7
        if rng.random() < 0.35:
            doc["quiet_hours"] = self.quiet_hours()
        if rng.random() < 0.35:
            doc["frequency_caps"] = self.frequency_caps()
        if rng.random() < 0.2:
            doc["lifetime"] = rng.choice(("30d", "90d", "1w"))
        doc.update(self.entry_period())
        if self.transactional:
            doc["transactional"] = True
        start = self.node(0)
        while start is None or start == "no_action":
            start = self.node(0)
        if rng.random() < 0.5:
            doc["start"] = start
        doc["steps"] = self.steps
        return doc


def render(document: dict[str, Any], rng: random.Random) -> str:
    """YAML in block or flow style, or JSON (which is YAML too)."""
    style = rng.choice(("block", "block", "flow", "json"))
    if style == "json":
        return json.dumps(document, indent=1) + "\n"
    text: str = yaml.safe_dump(
        document, sort_keys=False, default_flow_style=None if style == "flow" else False, width=100
    )
    return text


def generate_journeys(
    rng: random.Random, scale: TimeScale, base: datetime, zones: list[str], prefix: str
) -> list[str]:
    """One to three journey files, ids `<prefix>-j<n>`."""
    return [
        render(_Journey(rng, scale, base, zones, f"{prefix}-j{n}").document(), rng)
        for n in range(rng.randint(1, 3))
    ]


def generate_rules(
    rng: random.Random, scale: TimeScale, base: datetime, zones: list[str]
) -> str | None:
    """A global rules file (quiet hours and/or frequency caps for every journey), or None."""
    if rng.random() < 0.4:
        return None
    builder = _Journey(rng, scale, base, zones, "rules")
    rules: dict[str, Any] = {"kind": "rules", "version": 1}
    if rng.random() < 0.6:
        rules["quiet_hours"] = builder.quiet_hours()
    if "quiet_hours" not in rules or rng.random() < 0.6:
        rules["frequency_caps"] = builder.frequency_caps()
    return render(rules, rng)
