"""A journey as the engine runs it: entry, audience, steps (a graph without cycles, so each step
runs at most once per entry and its dispatch id is unique), exit criteria, goal and rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from app.engine.conditions import Condition
from app.engine.durations import format_duration

NO_ACTION = "no_action"

CHANNELS = ("email", "push", "webhook", "sms")


@dataclass(frozen=True)
class EventEntry:
    """Enter on an event whose properties match; with `within`, only if it happened within that
    long after the user's `of_event` event or `of_attribute` time ("added a class within 4 hours
    of signing up")."""

    event: str
    properties: dict[str, Any] = field(default_factory=dict)
    within: timedelta | None = None
    of_event: str | None = None
    of_attribute: str | None = None


@dataclass(frozen=True)
class AttributeEntry:
    """Enter when an update changes this attribute."""

    attribute: str


@dataclass(frozen=True)
class ScheduleEntry:
    """Enter the audience at each tick of a cron schedule, in each user's time zone."""

    cron: str


Entry = EventEntry | AttributeEntry | ScheduleEntry


@dataclass(frozen=True)
class EntryLimits:
    """At most `per_minute` entries into the journey in one minute (UTC, by entry time) and at
    most `total` ever, over all users and versions (see `app.engine.entry_limits`)."""

    per_minute: int | None = None
    total: int | None = None

    def describe(self) -> str:
        parts = [f"{self.per_minute} per minute"] if self.per_minute is not None else []
        parts += [f"{self.total} in total"] if self.total is not None else []
        return " and ".join(parts)


@dataclass(frozen=True)
class ReEntry:
    policy: str  # once | every_time | cooldown
    cooldown: timedelta | None = None


@dataclass(frozen=True)
class DelayStep:
    id: str
    next: str | None
    duration: timedelta | None = None
    until_time: time | None = None  # next time of day in the user's time zone
    until_attribute: str | None = None  # a datetime attribute, e.g. trial_ends_at


WEBHOOK_METHODS = ("POST", "PUT", "PATCH")


@dataclass(frozen=True)
class WebhookRequest:
    """A webhook step's own request: where and how to send, and a Jinja2 `body` template (None:
    the default JSON body). Headers are pairs so the step stays hashable."""

    url: str | None = None
    method: str = "POST"
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {"method": self.method, "headers": dict(self.headers)}
        if self.url is not None:
            record["url"] = self.url
        if self.body is not None:
            record["body"] = self.body
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> WebhookRequest:
        return cls(
            url=record.get("url"),
            method=record.get("method", "POST"),
            headers=tuple(sorted((record.get("headers") or {}).items())),
            body=record.get("body"),
        )


DIGEST_EVENTS_MAX = 20  # event names one digest counts
DIGEST_LATEST_MAX = 20  # events one digest lists, at most


@dataclass(frozen=True)
class Digest:
    """What a message summarises: the named events the user did since this step last sent to
    them (or since entering, if it never did), each name counted and the `latest` few listed.
    The user's state keeps per step only the counts and the `latest` newest events, so it stays
    bounded however much the user does (see `app.engine.digests`)."""

    events: tuple[str, ...]
    latest: int = 5


@dataclass(frozen=True)
class MessageStep:
    id: str
    next: str | None
    channel: str
    template: str
    # Only for webhook steps: the step's own URL, method, headers and body template.
    webhook: WebhookRequest | None = None
    # The template gets `digest`: what the user did since this step last sent to them.
    digest: Digest | None = None
    # The subscription topic the message belongs to (e.g. product_updates): a user who opted out
    # of it gets nothing from this step, and its unsubscribe link opts out of the topic.
    topic: str | None = None


@dataclass(frozen=True)
class BranchStep:
    """A yes/no question; nested branches make the decision tree, whose leaves are messages (or
    any step) and `no_action`."""

    id: str
    condition: Condition
    yes: str
    no: str


@dataclass(frozen=True)
class WaitForStep:
    id: str
    event: str
    properties: dict[str, Any]
    timeout: timedelta
    performed: str | None
    timed_out: str | None
    # A message step of this journey: only an event about what that step sent in this same entry
    # (its `dispatch_id` property) counts, e.g. message_opened of the welcome email.
    message: str | None = None


@dataclass(frozen=True)
class Path:
    id: str
    delay: timedelta
    condition: Condition | None
    next: str | None


@dataclass(frozen=True)
class PathsStep:
    """All paths are scheduled; the first whose conditions hold at its due time wins and the
    others are cancelled (the write-up's branching)."""

    id: str
    paths: tuple[Path, ...]


@dataclass(frozen=True)
class SplitBranch:
    id: str
    percent: float
    next: str | None


@dataclass(frozen=True)
class SplitStep:
    id: str
    branches: tuple[SplitBranch, ...]


@dataclass(frozen=True)
class ExitStep:
    id: str


Step = DelayStep | MessageStep | BranchStep | WaitForStep | PathsStep | SplitStep | ExitStep


@dataclass(frozen=True)
class ExitEvent:
    event: str
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Goal:
    """The event that counts as a conversion within `within` of entering. By default a converted
    user goes on with the journey (as before goals could exit); with `exit_on_conversion` the
    entry exits at the conversion, so a converted user gets nothing more from it."""

    event: str
    within: timedelta
    properties: dict[str, Any] = field(default_factory=dict)
    exit_on_conversion: bool = False


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time

    def contains(self, moment: time) -> bool:
        if self.start <= self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end


@dataclass(frozen=True)
class FrequencyCap:
    """At most `limit` sends on `channel` per user in any rolling `window`, across journeys."""

    channel: str
    limit: int
    window: timedelta


@dataclass(frozen=True)
class Rules:
    quiet_hours: QuietHours | None = None
    frequency_caps: tuple[FrequencyCap, ...] = ()

    def describe(self) -> str:
        """One line for people: `quiet hours 21:00-08:00; email at most 1 per 1d`."""
        parts = [
            f"quiet hours {self.quiet_hours.start:%H:%M}-{self.quiet_hours.end:%H:%M}"
            if self.quiet_hours
            else "no quiet hours"
        ]
        parts += [
            f"{cap.channel} at most {cap.limit} per {format_duration(cap.window)}"
            for cap in self.frequency_caps
        ]
        return "; ".join(parts) if self.frequency_caps else f"{parts[0]}; no frequency caps"


@dataclass(frozen=True)
class VersionedRules:
    """A rules file (`kind: rules`): rules for every journey, deployed and versioned like a
    journey so the workers apply the same rules the simulator is given."""

    version: int
    rules: Rules


@dataclass(frozen=True)
class Journey:
    id: str
    version: int
    name: str
    entry: Entry
    start: str
    steps: dict[str, Step]
    audience: Condition | None = None
    re_entry: ReEntry = ReEntry("once")
    entry_limits: EntryLimits | None = None
    holdout_percent: float = 0.0
    exit_events: tuple[ExitEvent, ...] = ()
    exit_conditions: tuple[Condition, ...] = ()
    goal: Goal | None = None
    rules: Rules = Rules()
    # The longest an entry can stay active; bounds the branch lock's lifetime.
    lifetime: timedelta = timedelta(days=90)
    # Variables to check the messages' templates with (`journeys validate`); the engine never
    # reads them.
    sample: dict[str, Any] = field(default_factory=dict)
    # Entries only for inputs at or after `starts_at` and at or before `ends_at`.
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    # Enter for events that happened before the journey was first published too.
    enter_past_events: bool = False
    # Messages users asked for (receipts, password resets): no unsubscribe link or headers, and
    # topic opt-outs do not apply; channel unsubscribes and the suppression list still do.
    transactional: bool = False

    @property
    def key(self) -> str:
        return f"{self.id}:{self.version}"


def successors(step: Step) -> list[tuple[str, str]]:
    """(label, next step id) for every edge out of a step."""
    match step:
        case DelayStep() | MessageStep():
            return [("", step.next)] if step.next else []
        case BranchStep():
            return [("yes", step.yes), ("no", step.no)]
        case WaitForStep():
            edges = [("performed", step.performed), ("timed out", step.timed_out)]
            return [(label, target) for label, target in edges if target]
        case PathsStep():
            return [(path.id, path.next) for path in step.paths if path.next]
        case SplitStep():
            return [(f"{b.id} {b.percent:g}%", b.next) for b in step.branches if b.next]
        case ExitStep():
            return []
    raise TypeError(f"not a step: {step!r}")
