"""Journey files (YAML, or JSON, which is YAML) to validated `Journey` objects. An error names the
file, the path inside it and its line, what was found and what was expected. A key the loader
never reads is an error too (see `_Read`): a misspelt key must not be silently ignored."""

from __future__ import annotations

import difflib
import re
import urllib.parse
from collections.abc import Callable, ItemsView, Iterator, Mapping
from datetime import UTC, datetime, time, timedelta
from typing import Any

import yaml

from app.engine import conditions as c
from app.engine.definitions import (
    CHANNELS,
    DIGEST_EVENTS_MAX,
    DIGEST_LATEST_MAX,
    NO_ACTION,
    WEBHOOK_METHODS,
    AttributeEntry,
    BranchStep,
    DelayStep,
    Digest,
    Entry,
    EntryLimits,
    EventEntry,
    ExitEvent,
    ExitStep,
    FrequencyCap,
    Goal,
    Journey,
    MessageStep,
    PathsStep,
    QuietHours,
    ReEntry,
    Rules,
    ScheduleEntry,
    SplitBranch,
    SplitStep,
    Step,
    VersionedRules,
    WaitForStep,
    WebhookRequest,
    successors,
)
from app.engine.definitions import (
    Path as JourneyPath,
)

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DURATION = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
Where = tuple[str | int, ...]
MAX_DURATION = timedelta(days=36500)
MAX_VERSION = 2**31 - 1
MAX_NODES = 100_000  # aliases can make a small file expand without bound
HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,128}$")
# Set by the sender on every webhook request: a step cannot replace them.
RESERVED_HEADERS = ("content-length", "host", "idempotency-key", "x-journeys-signature")
MAX_WEBHOOK_BODY = 16 * 1024
MAX_URL = 2048


class JourneyError(ValueError):
    def __init__(self, source: str, where: Where, line: int | None, found: str, expected: str):
        self.source = source
        self.where = "/" + "/".join(str(part) for part in where)
        self.line = line
        self.found = found
        self.expected = expected
        at = f"{source}:{line}" if line else source
        super().__init__(f"{at}: at {self.where}: found {found}, expected {expected}")


class JourneyErrors(JourneyError):
    """Several errors of one file, reported together: the first's fields, one line each."""

    def __init__(self, errors: list[JourneyError]) -> None:
        first = errors[0]
        super().__init__(first.source, (), first.line, first.found, first.expected)
        self.where = first.where
        self.errors = errors
        self.args = ("\n".join(str(error) for error in errors),)

    def __str__(self) -> str:
        return str(self.args[0])


class _Read(Mapping[str, Any]):
    """A mapping of the file that records every key the loader asks about (read or looked up),
    so the keys it never asked about are reported as unknown: whatever the loader reads is
    valid, with no table of allowed keys to keep in step with it."""

    def __init__(self, data: dict[str, Any], asked: set[str]) -> None:
        self._data = data
        self._asked = asked

    def __getitem__(self, key: str) -> Any:
        self._asked.add(key)
        return self._data[key]

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self._asked.add(key)
        return key in self._data

    def get(self, key: str, default: Any = None) -> Any:
        self._asked.add(key)
        return self._data.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def items(self) -> ItemsView[str, Any]:
        """Every key, read: a mapping whose keys are ids or free-form data."""
        self._asked.update(self._data)
        return self._data.items()


class _Document:
    """The parsed file plus the line of every node, for error messages."""

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.lines: dict[Where, int] = {}
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            line = mark.line + 1 if mark else None
            raise JourneyError(
                source, (), line, f"invalid YAML ({error})", "a YAML mapping"
            ) from None
        self.root = self._plain(node, (), ()) if node is not None else None

    def _plain(
        self, node: yaml.Node, where: Where, parents: tuple[int, ...], line: int | None = None
    ) -> Any:
        """`line` is the line of the node's key, where the reader looks for a mapping's value."""
        line = line or node.start_mark.line + 1
        self.lines[where] = line
        if len(self.lines) > MAX_NODES:
            raise JourneyError(
                self.source, where, line, f"more than {MAX_NODES} nodes", "a journey file"
            )
        if id(node) in parents:  # an alias inside the node it names
            raise JourneyError(self.source, where, line, "a recursive alias", "a finite document")
        inside = (*parents, id(node))
        if isinstance(node, yaml.MappingNode):
            return {
                (key := str(k.value)): self._plain(v, (*where, key), inside, k.start_mark.line + 1)
                for k, v in node.value
            }
        if isinstance(node, yaml.SequenceNode):
            return [self._plain(item, (*where, i), inside) for i, item in enumerate(node.value)]
        try:
            return yaml.SafeLoader.construct_object(yaml.SafeLoader(""), node, deep=True)
        except yaml.YAMLError as error:
            problem = getattr(error, "problem", None) or str(error)
            raise JourneyError(
                self.source, where, line, f"invalid YAML ({problem})", "a plain YAML value"
            ) from None

    def error(self, where: Where, found: Any, expected: str) -> JourneyError:
        line = next(
            (self.lines[where[:n]] for n in range(len(where), -1, -1) if where[:n] in self.lines),
            None,
        )
        shown = (
            found
            if isinstance(found, str) and found.startswith(("a ", "no ", "an "))
            else repr(found)
        )
        return JourneyError(self.source, where, line, shown, expected)


class _Reader:
    def __init__(self, document: _Document) -> None:
        self.doc = document
        # Path of every mapping the loader read -> the keys it asked about there.
        self.asked: dict[Where, set[str]] = {}

    def mapping(self, value: Any, where: Where) -> Mapping[str, Any]:
        if isinstance(value, _Read):
            return value
        if not isinstance(value, dict):
            raise self.doc.error(where, value, "a mapping")
        return _Read(value, self.asked.setdefault(where, set()))

    def field(self, mapping: Mapping[str, Any], where: Where, key: str) -> Any:
        if key not in mapping:
            unread = [k for k in mapping if k not in self.asked.get(where, ())]
            close = difflib.get_close_matches(key, unread, n=1)
            hint = f" (found `{close[0]}`: a misspelling?)" if close else ""
            raise self.doc.error((*where, key), "no value", f"'{key}' to be set{hint}")
        return mapping[key]

    def unknown_keys(self) -> list[JourneyError]:
        """An error for every key of a mapping the loader read that it never asked about, with
        the closest key it did ask about there. Below an unknown key nothing is reported, nor
        inside mappings the loader keeps as data (properties, compared values)."""
        errors: list[JourneyError] = []

        def walk(value: Any, where: Where) -> None:
            if isinstance(value, list):
                for i, item in enumerate(value):
                    walk(item, (*where, i))
            if not isinstance(value, dict):
                return
            asked = self.asked.get(where)
            for key, item in value.items():
                if asked is None or key in asked:
                    walk(item, (*where, key))
                    continue
                known = sorted(asked)
                close = difflib.get_close_matches(key, known, n=1)
                expected = (
                    f"a key this format reads (did you mean `{close[0]}`?)"
                    if close
                    else f"a key this format reads here: {', '.join(known) or 'none'}"
                )
                errors.append(self.doc.error((*where, key), f"an unknown key '{key}'", expected))

        walk(self.doc.root, ())
        return errors

    def check_keys(self, *more: JourneyError) -> None:
        errors = [*self.unknown_keys(), *more]
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise JourneyErrors(errors)

    def name(self, value: Any, where: Where) -> str:
        if not isinstance(value, str) or not NAME.match(value):
            raise self.doc.error(where, value, "a name of letters, digits, '-' or '_' (at most 64)")
        return value

    def duration(self, value: Any, where: Where) -> timedelta:
        """Seconds, or text such as 1h30m; at most MAX_DURATION, so every time a journey computes
        from now stays a date."""
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            total = value
        else:
            match = DURATION.match(value) if isinstance(value, str) else None
            if not match or not any(match.groups()):
                raise self.doc.error(where, value, "a duration such as 90s, 15m, 1h30m, 3d or 1w")
            w, d, h, m, s = (int(g or 0) for g in match.groups())
            total = (((w * 7 + d) * 24 + h) * 60 + m) * 60 + s
        if total > MAX_DURATION.total_seconds():
            raise self.doc.error(where, value, f"a duration of at most {MAX_DURATION.days}d")
        return timedelta(seconds=total)

    def clock(self, value: Any, where: Where) -> time:
        match = CLOCK.match(value) if isinstance(value, str) else None
        if not match:
            raise self.doc.error(where, value, "a time of day as HH:MM")
        return time(int(match.group(1)), int(match.group(2)))

    def moment(self, value: Any, where: Where) -> datetime:
        """A date-time with its offset: YAML reads an unquoted one itself, JSON gives text."""
        moment = value if isinstance(value, datetime) else None
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                moment = None
        if moment is None or moment.tzinfo is None:
            raise self.doc.error(
                where, value, "a date-time with a time zone offset, such as 2026-12-01T09:00:00Z"
            )
        return moment.astimezone(UTC)

    def flag(self, value: Any, where: Where) -> bool:
        if not isinstance(value, bool):
            raise self.doc.error(where, value, "true or false")
        return value

    def number(self, value: Any, where: Where, low: float, high: float) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            raise self.doc.error(where, value, f"a number from {low:g} to {high:g}")
        return float(value)

    def free_form(self, value: Any, where: Where) -> dict[str, Any]:
        """Keys and values that are data, not format (a journey's `sample`), each read."""
        return dict(self.mapping(value, where).items()) if value is not None else {}

    def properties(self, value: Any, where: Where) -> dict[str, Any]:
        """An event property filter: name -> a value it must equal, or a one-key mapping of an
        operator (`{gte: 2}`, `{in: [a, b]}`, `{exists: true}`, `{contains: x}`, `{prefix: x}`)."""
        wanted = dict(self.mapping(value, where).items()) if value is not None else {}
        for name, operand in wanted.items():
            if isinstance(operand, dict):
                if len(operand) != 1:
                    raise self.doc.error(
                        (*where, name), f"a mapping with keys {sorted(operand)}", "one operator"
                    )
                ((op, operand_value),) = operand.items()
                self._operator(f"properties.{name}", op, operand_value, (*where, name))
        return wanted

    # --- conditions ------------------------------------------------------------------------

    def condition(self, value: Any, where: Where) -> c.Condition:
        spec = self.mapping(value, where)
        if "all" in spec or "any" in spec:
            key = "all" if "all" in spec else "any"
            parts = spec[key]
            if not isinstance(parts, list):
                raise self.doc.error((*where, key), parts, "a list of conditions")
            built = tuple(self.condition(p, (*where, key, i)) for i, p in enumerate(parts))
            return c.All(built) if key == "all" else c.Any_(built)
        if "not" in spec:
            return c.Not(self.condition(spec["not"], (*where, "not")))
        if "attribute" in spec:
            return self._attribute_condition(spec, where)
        if "event" in spec:
            return self._event_condition(spec, where)
        if "since_attribute" in spec or "since_event" in spec:
            at_least = self.duration(self.field(spec, where, "at_least"), (*where, "at_least"))
            if "since_attribute" in spec:
                path = (
                    f"attributes.{self.name(spec['since_attribute'], (*where, 'since_attribute'))}"
                )
            else:
                path = f"events.{self.name(spec['since_event'], (*where, 'since_event'))}.last_at"
            return c.TimeSince(path, at_least)
        if "received" in spec:
            template = self.name(spec["received"], (*where, "received"))
            if "within" in spec:
                window = self.duration(spec["within"], (*where, "within"))
                return c.Within(f"received.{template}.last_at", window)
            return c.received(template)
        if "subscribed" in spec:
            channel = spec["subscribed"]
            if channel not in CHANNELS:
                raise self.doc.error(
                    (*where, "subscribed"), channel, f"one of {', '.join(CHANNELS)}"
                )
            return c.subscribed(channel)
        if "subscribed_topic" in spec:
            return c.subscribed_topic(
                self.name(spec["subscribed_topic"], (*where, "subscribed_topic"))
            )
        raise self.doc.error(
            where,
            f"a mapping with keys {sorted(spec)}",
            "a condition: attribute, event, since_attribute, since_event, received, subscribed, "
            "subscribed_topic, all, any or not",
        )

    def _attribute_condition(self, spec: Mapping[str, Any], where: Where) -> c.Condition:
        name = self.name(spec["attribute"], (*where, "attribute"))
        ops = [key for key in spec if key != "attribute"]
        if len(ops) != 1:
            raise self.doc.error(where, f"a mapping with keys {sorted(spec)}", "one operator")
        (op,) = ops
        if op == "changed_since_entry":
            self._true(spec[op], (*where, op))
            return c.SinceEntry(f"changed.{name}")
        return self._operator(f"attributes.{name}", op, spec[op], where)

    def _operator(self, path: str, op: str, value: Any, where: Where) -> c.Condition:
        """A field operator (attribute conditions and event property filters share them), its
        value checked for the operator."""
        at = (*where, op)
        if op in c.COMPARISONS:
            if value is None and op not in ("equals", "not_equals"):
                raise self.doc.error(at, value, "a value to compare with")
        elif op == "in":
            if not isinstance(value, list):
                raise self.doc.error(at, value, "a list of values")
        elif op == "exists":
            self.flag(value, at)
        elif op in ("contains", "prefix"):
            if not isinstance(value, str):
                raise self.doc.error(at, value, "a string")
        else:
            raise self.doc.error(
                at, op, "equals, not_equals, gt, gte, lt, lte, in, exists, contains or prefix"
            )
        return c.field_operator(path, op, value)

    def _true(self, value: Any, where: Where) -> None:
        if value is not True:
            raise self.doc.error(where, value, "true (write `not:` around it for the opposite)")

    def _event_condition(self, spec: Mapping[str, Any], where: Where) -> c.Condition:
        event = self.name(spec["event"], (*where, "event"))
        if "performed_at_least" in spec:
            count = self.number(spec["performed_at_least"], (*where, "performed_at_least"), 1, 1e9)
            return c.event_count_at_least(event, int(count))
        if "within" in spec:
            return c.Within(
                f"events.{event}.last_at", self.duration(spec["within"], (*where, "within"))
            )
        if spec.get("never") is True:
            return c.event_never(event)
        if "since_entry" in spec:
            self._true(spec["since_entry"], (*where, "since_entry"))
            return c.SinceEntry(f"events.{event}.last_at")
        raise self.doc.error(
            where,
            f"a mapping with keys {sorted(spec)}",
            "performed_at_least, within, since_entry: true or never: true",
        )

    # --- journey ---------------------------------------------------------------------------

    def entry(self, value: Any, where: Where) -> Entry:
        spec = self.mapping(value, where)
        if "event" in spec:
            entry = EventEntry(
                event=self.name(spec["event"], (*where, "event")),
                properties=self.properties(spec.get("properties"), (*where, "properties")),
                within=self.duration(spec["within"], (*where, "within"))
                if "within" in spec
                else None,
                of_event=self.name(spec["of_event"], (*where, "of_event"))
                if "of_event" in spec
                else None,
                of_attribute=(
                    self.name(spec["of_attribute"], (*where, "of_attribute"))
                    if "of_attribute" in spec
                    else None
                ),
            )
            if entry.within is not None and (entry.of_event is None) == (
                entry.of_attribute is None
            ):
                raise self.doc.error(
                    (*where, "within"), "a window without one reference", "of_event or of_attribute"
                )
            return entry
        if "attribute" in spec:
            return AttributeEntry(self.name(spec["attribute"], (*where, "attribute")))
        if "schedule" in spec:
            cron = spec["schedule"]
            from croniter import croniter

            if not isinstance(cron, str) or not croniter.is_valid(cron) or len(cron.split()) != 5:
                raise self.doc.error(
                    (*where, "schedule"), cron, "a 5-field cron expression such as '0 8 * * MON'"
                )
            return ScheduleEntry(cron)
        raise self.doc.error(
            where,
            f"a mapping with keys {sorted(spec)}",
            "an entry with event, attribute or schedule",
        )

    def re_entry(self, value: Any, where: Where) -> ReEntry:
        if value in ("once", "every_time"):
            return ReEntry(value)
        if isinstance(value, dict) and "cooldown" in (spec := self.mapping(value, where)):
            return ReEntry("cooldown", self.duration(spec["cooldown"], (*where, "cooldown")))
        raise self.doc.error(where, value, "once, every_time or {cooldown: DURATION}")

    def step(self, step_id: str, value: Any, where: Where) -> Step:
        spec = self.mapping(value, where)
        kind = self.field(spec, where, "type")

        def target(key: str) -> str | None:
            return self.name(spec[key], (*where, key)) if spec.get(key) is not None else None

        if kind == "delay":
            options = [k for k in ("duration", "until_time", "until_attribute") if k in spec]
            if len(options) != 1:
                raise self.doc.error(
                    where,
                    f"keys {sorted(spec)}",
                    "exactly one of duration, until_time, until_attribute",
                )
            return DelayStep(
                id=step_id,
                next=target("next"),
                duration=self.duration(spec["duration"], (*where, "duration"))
                if "duration" in spec
                else None,
                until_time=self.clock(spec["until_time"], (*where, "until_time"))
                if "until_time" in spec
                else None,
                until_attribute=(
                    self.name(spec["until_attribute"], (*where, "until_attribute"))
                    if "until_attribute" in spec
                    else None
                ),
            )
        if kind == "message":
            channel = self.field(spec, where, "channel")
            if channel not in CHANNELS:
                raise self.doc.error((*where, "channel"), channel, f"one of {', '.join(CHANNELS)}")
            return MessageStep(
                id=step_id,
                next=target("next"),
                channel=channel,
                template=self.name(self.field(spec, where, "template"), (*where, "template")),
                webhook=self._webhook(spec, where) if channel == "webhook" else None,
                digest=(
                    self._digest(spec["digest"], (*where, "digest")) if "digest" in spec else None
                ),
                topic=self.name(spec["topic"], (*where, "topic")) if "topic" in spec else None,
            )
        if kind == "branch":
            return BranchStep(
                id=step_id,
                condition=self.condition(self.field(spec, where, "if"), (*where, "if")),
                yes=self.name(self.field(spec, where, "yes"), (*where, "yes")),
                no=self.name(self.field(spec, where, "no"), (*where, "no")),
            )
        if kind == "wait_for":
            return WaitForStep(
                id=step_id,
                event=self.name(self.field(spec, where, "event"), (*where, "event")),
                properties=self.properties(spec.get("properties"), (*where, "properties")),
                timeout=self.duration(self.field(spec, where, "timeout"), (*where, "timeout")),
                performed=target("performed"),
                timed_out=target("timed_out"),
                message=self.name(spec["message"], (*where, "message"))
                if "message" in spec
                else None,
            )
        if kind == "paths":
            paths = self.field(spec, where, "paths")
            if not isinstance(paths, list) or not paths:
                raise self.doc.error((*where, "paths"), paths, "a non-empty list of paths")
            return PathsStep(
                step_id, tuple(self._path(p, (*where, "paths", i)) for i, p in enumerate(paths))
            )
        if kind == "split":
            branches = self.field(spec, where, "branches")
            if not isinstance(branches, list) or not branches:
                raise self.doc.error((*where, "branches"), branches, "a non-empty list of branches")
            built = tuple(
                self._split_branch(b, (*where, "branches", i)) for i, b in enumerate(branches)
            )
            if abs(sum(b.percent for b in built) - 100) > 1e-9:
                raise self.doc.error(
                    (*where, "branches"),
                    f"percentages adding up to {sum(b.percent for b in built):g}",
                    "100",
                )
            return SplitStep(step_id, built)
        if kind == "exit":
            return ExitStep(step_id)
        raise self.doc.error(
            (*where, "type"), kind, "delay, message, branch, wait_for, paths, split or exit"
        )

    def _webhook(self, spec: Mapping[str, Any], where: Where) -> WebhookRequest | None:
        """A webhook step's `url`, `method`, `headers` and `body` (a Jinja2 template); without
        any of them the step posts the default JSON body to WEBHOOK_URL. Other channels never
        read these keys, so there they are reported as unknown."""
        if not any(key in spec for key in ("url", "method", "headers", "body")):
            return None
        url = spec.get("url")
        if url is not None and not _web_url(url):
            raise self.doc.error(
                (*where, "url"), url, f"an http:// or https:// URL of at most {MAX_URL} characters"
            )
        method = spec.get("method", "POST")
        if not isinstance(method, str) or method.upper() not in WEBHOOK_METHODS:
            raise self.doc.error((*where, "method"), method, f"one of {', '.join(WEBHOOK_METHODS)}")
        headers: list[tuple[str, str]] = []
        for name, value in dict(
            self.mapping(spec.get("headers") or {}, (*where, "headers")).items()
        ).items():
            at = (*where, "headers", name)
            if not HEADER_NAME.match(name):
                raise self.doc.error(at, name, "a header name of letters, digits and '-'")
            if name.lower() in RESERVED_HEADERS:
                raise self.doc.error(
                    at, name, f"a header name other than {', '.join(RESERVED_HEADERS)}"
                )
            if not isinstance(value, str) or "\r" in value or "\n" in value:
                raise self.doc.error(at, value, "a header value: text on one line")
            headers.append((name, value))
        body = spec.get("body")
        if body is not None and not isinstance(body, str):
            raise self.doc.error((*where, "body"), body, "a body template: text")
        if body is not None and len(body) > MAX_WEBHOOK_BODY:
            raise self.doc.error(
                (*where, "body"),
                f"a body of {len(body)} characters",
                f"a body template of at most {MAX_WEBHOOK_BODY} characters",
            )
        return WebhookRequest(url, method.upper(), tuple(sorted(headers)), body)

    def _digest(self, value: Any, where: Where) -> Digest:
        """`{events: [NAME, ...], latest: N}`: the events to count (at least one, each once)
        and how many of the newest to list (default 5)."""
        spec = self.mapping(value, where)
        names = self.field(spec, where, "events")
        if not isinstance(names, list) or not 1 <= len(names) <= DIGEST_EVENTS_MAX:
            raise self.doc.error(
                (*where, "events"), names, f"a list of 1 to {DIGEST_EVENTS_MAX} event names"
            )
        events = tuple(self.name(n, (*where, "events", i)) for i, n in enumerate(names))
        for i, name in enumerate(events):
            if name in events[:i]:
                raise self.doc.error((*where, "events", i), name, "each event named once")
        latest = spec.get("latest", 5)
        if (
            isinstance(latest, bool)
            or not isinstance(latest, int)
            or not 0 <= latest <= DIGEST_LATEST_MAX
        ):
            raise self.doc.error(
                (*where, "latest"), latest, f"a whole number from 0 to {DIGEST_LATEST_MAX}"
            )
        return Digest(events, latest)

    def _path(self, value: Any, where: Where) -> JourneyPath:
        spec = self.mapping(value, where)
        return JourneyPath(
            id=self.name(self.field(spec, where, "id"), (*where, "id")),
            delay=self.duration(spec.get("delay", 0), (*where, "delay")),
            condition=self.condition(spec["if"], (*where, "if")) if "if" in spec else None,
            next=self.name(spec["next"], (*where, "next")) if spec.get("next") else None,
        )

    def _split_branch(self, value: Any, where: Where) -> SplitBranch:
        spec = self.mapping(value, where)
        return SplitBranch(
            id=self.name(self.field(spec, where, "id"), (*where, "id")),
            percent=self.number(self.field(spec, where, "percent"), (*where, "percent"), 0, 100),
            next=self.name(spec["next"], (*where, "next")) if spec.get("next") else None,
        )

    def rules(self, spec: Mapping[str, Any], where: Where) -> Rules:
        quiet = None
        if "quiet_hours" in spec:
            q = self.mapping(spec["quiet_hours"], (*where, "quiet_hours"))
            quiet = QuietHours(
                self.clock(
                    self.field(q, (*where, "quiet_hours"), "start"),
                    (*where, "quiet_hours", "start"),
                ),
                self.clock(
                    self.field(q, (*where, "quiet_hours"), "end"), (*where, "quiet_hours", "end")
                ),
            )
        caps = []
        listed = spec.get("frequency_caps") or []
        if not isinstance(listed, list):
            raise self.doc.error((*where, "frequency_caps"), listed, "a list of frequency caps")
        for i, cap in enumerate(listed):
            at = (*where, "frequency_caps", i)
            cap = self.mapping(cap, at)
            channel = self.field(cap, at, "channel")
            if channel not in CHANNELS:
                raise self.doc.error((*at, "channel"), channel, f"one of {', '.join(CHANNELS)}")
            caps.append(
                FrequencyCap(
                    channel,
                    int(self.number(self.field(cap, at, "limit"), (*at, "limit"), 1, 1e9)),
                    self.duration(self.field(cap, at, "window"), (*at, "window")),
                )
            )
        return Rules(quiet, tuple(caps))

    def version(self, root: Mapping[str, Any]) -> int:
        version = self.field(root, (), "version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise self.doc.error(("version",), version, "a whole number from 1")
        if version > MAX_VERSION:  # the store keeps it as a number
            raise self.doc.error(("version",), version, f"a whole number from 1 to {MAX_VERSION}")
        return version

    def rules_file(self) -> VersionedRules:
        root = self.mapping(self.doc.root, ())
        kind = self.field(root, (), "kind")
        if kind != "rules":
            raise self.doc.error(("kind",), kind, "rules (a journey file has no kind)")
        loaded = VersionedRules(self.version(root), self.rules(root, ()))
        self.check_keys()
        return loaded

    def journey(self) -> Journey:
        root = self.mapping(self.doc.root, ())
        journey_id = self.name(self.field(root, (), "id"), ("id",))
        version = self.version(root)
        steps_spec = self.mapping(self.field(root, (), "steps"), ("steps",))
        if not steps_spec:
            raise self.doc.error(("steps",), "no steps", "at least one step")
        steps = {
            self.name(step_id, ("steps", step_id)): self.step(step_id, spec, ("steps", step_id))
            for step_id, spec in steps_spec.items()
        }
        if NO_ACTION in steps:
            raise self.doc.error(
                ("steps", NO_ACTION), NO_ACTION, "a step id other than no_action (it ends an entry)"
            )
        start = self.name(root.get("start", next(iter(steps))), ("start",))
        exit_events, exit_conditions = [], []
        for i, item in enumerate(root.get("exit_when") or []):
            item = self.mapping(item, ("exit_when", i))
            if "event" in item:
                exit_events.append(
                    ExitEvent(
                        self.name(item["event"], ("exit_when", i, "event")),
                        self.properties(item.get("properties"), ("exit_when", i, "properties")),
                    )
                )
            else:
                exit_conditions.append(
                    self.condition(
                        self.field(item, ("exit_when", i), "condition"),
                        ("exit_when", i, "condition"),
                    )
                )
        goal = None
        if "goal" in root:
            g = self.mapping(root["goal"], ("goal",))
            goal = Goal(
                self.name(self.field(g, ("goal",), "event"), ("goal", "event")),
                self.duration(self.field(g, ("goal",), "within"), ("goal", "within")),
                self.properties(g.get("properties"), ("goal", "properties")),
                self.flag(g.get("exit_on_conversion", False), ("goal", "exit_on_conversion")),
            )
        journey = Journey(
            id=journey_id,
            version=version,
            name=str(root.get("name", journey_id)),
            entry=self.entry(self.field(root, (), "entry"), ("entry",)),
            start=start,
            steps=steps,
            audience=self._audience(root["audience"]) if "audience" in root else None,
            re_entry=self.re_entry(root.get("re_entry", "once"), ("re_entry",)),
            entry_limits=self._entry_limits(root["entry_limits"])
            if "entry_limits" in root
            else None,
            holdout_percent=self.number(root.get("holdout", 0), ("holdout",), 0, 100),
            exit_events=tuple(exit_events),
            exit_conditions=tuple(exit_conditions),
            goal=goal,
            rules=self.rules(root, ()),
            lifetime=self.duration(root.get("lifetime", "90d"), ("lifetime",)),
            sample=self.free_form(root.get("sample"), ("sample",)),
            transactional=self.flag(root.get("transactional", False), ("transactional",)),
            **self._entry_period(root),
        )
        self.check_keys(*self._unreached(steps, start), *self._topics_refused(journey))
        self._check_graph(steps, start)
        return journey

    def _topics_refused(self, journey: Journey) -> list[JourneyError]:
        """A transactional journey's messages ignore topic opt-outs, so a topic there would be a
        promise it does not keep."""
        if not journey.transactional:
            return []
        return [
            self.doc.error(
                ("steps", step.id, "topic"),
                step.topic,
                "no topic in a transactional journey (its messages ignore topic opt-outs)",
            )
            for step in journey.steps.values()
            if isinstance(step, MessageStep) and step.topic is not None
        ]

    def _unreached(self, steps: dict[str, Step], start: str) -> list[JourneyError]:
        """Steps no link leads to from the start: never run, most often a misspelt link."""
        if start not in steps:
            return []
        reached, todo = {start}, [start]
        while todo:
            for _, target in successors(steps[todo.pop()]):
                if target in steps and target not in reached:
                    reached.add(target)
                    todo.append(target)
        return [
            self.doc.error(
                ("steps", step_id),
                "a step nothing leads to",
                f"a link to it from '{start}' (the start) or a step after it, or no such step",
            )
            for step_id in steps
            if step_id not in reached
        ]

    def _entry_period(self, root: dict[str, Any]) -> dict[str, Any]:
        """`starts_at`, `ends_at` and `enter_past_events`: when the journey takes entries."""
        period: dict[str, Any] = {
            key: self.moment(root[key], (key,)) for key in ("starts_at", "ends_at") if key in root
        }
        starts, ends = period.get("starts_at"), period.get("ends_at")
        if starts is not None and ends is not None and ends <= starts:
            raise self.doc.error(("ends_at",), root["ends_at"], "a time after starts_at")
        if "enter_past_events" in root:
            period["enter_past_events"] = self.flag(
                root["enter_past_events"], ("enter_past_events",)
            )
        return period

    def _entry_limits(self, value: Any) -> EntryLimits:
        spec = self.mapping(value, ("entry_limits",))
        if not spec.keys() & {"per_minute", "total"}:
            raise self.doc.error(("entry_limits",), "no limit", "per_minute, total or both")

        def limit(key: str) -> int | None:
            if key not in spec:
                return None
            found = spec[key]
            if isinstance(found, bool) or not isinstance(found, int) or found < 1:
                raise self.doc.error(("entry_limits", key), found, "a whole number from 1")
            return found

        return EntryLimits(limit("per_minute"), limit("total"))

    def _audience(self, value: Any) -> c.Condition:
        audience = self.condition(value, ("audience",))
        if audience.needs_entry:
            raise self.doc.error(
                ("audience",),
                "a condition with since_entry or changed_since_entry",
                "a condition without them (the audience is checked before entering)",
            )
        return audience

    def _check_graph(self, steps: dict[str, Step], start: str) -> None:
        """Every target exists, and there is no cycle: a step runs at most once per entry."""
        if start not in steps:
            raise self.doc.error(("start",), start, f"one of the steps: {', '.join(steps)}")
        for step_id, step in steps.items():
            for label, target in successors(step):
                if target != NO_ACTION and target not in steps:
                    raise self.doc.error(
                        ("steps", step_id),
                        f"a link '{label or 'next'}' to '{target}'",
                        "the id of a step or no_action",
                    )
            if (
                isinstance(step, WaitForStep)
                and step.message is not None
                and not isinstance(steps.get(step.message), MessageStep)
            ):
                raise self.doc.error(
                    ("steps", step_id, "message"),
                    step.message,
                    f"the id of a message step: {', '.join(_message_steps(steps)) or 'none'}",
                )
        state: dict[str, int] = {}

        def visit(step_id: str, trail: list[str]) -> None:
            if state.get(step_id) == 2 or step_id == NO_ACTION:
                return
            if state.get(step_id) == 1:
                cycle = " -> ".join([*trail[trail.index(step_id) :], step_id])
                raise self.doc.error(
                    ("steps", step_id),
                    f"a cycle {cycle}",
                    "steps without cycles (copy a step to repeat it)",
                )
            state[step_id] = 1
            for _, target in successors(steps[step_id]):
                visit(target, [*trail, step_id])
            state[step_id] = 2

        for step_id in steps:
            visit(step_id, [])


def _web_url(value: Any) -> bool:
    if not isinstance(value, str) or len(value) > MAX_URL:
        return False
    try:
        parts = urllib.parse.urlsplit(value)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False


def locate(text: str, source: str) -> Callable[[Where, Any, str], JourneyError]:
    """Errors about a loaded file's content found elsewhere (its templates), located as the
    loader locates its own: `locate(text, source)(where, found, expected)`."""
    return _Document(text, source).error


def load_journey_text(text: str, source: str = "<journey>") -> Journey:
    return _Reader(_Document(text, source)).journey()


def load_rules_text(text: str, source: str = "<rules>") -> VersionedRules:
    """A rules file: `kind: rules`, `version: N`, and quiet hours and frequency caps written as
    in a journey; they apply to every journey."""
    return _Reader(_Document(text, source)).rules_file()


def load_definition_text(text: str, source: str) -> Journey | VersionedRules:
    """A journey file, or a rules file (`kind: rules`): whatever `validate` and `deploy` take."""
    reader = _Reader(_Document(text, source))
    root = reader.doc.root
    if isinstance(root, dict) and "kind" not in root and not {"id", "steps"} & set(root):
        raise reader.doc.error(
            ("kind",),
            "no value",
            "kind: rules and a version (a rules file), or id, entry and steps (a journey)",
        )
    return reader.rules_file() if isinstance(root, dict) and "kind" in root else reader.journey()


def load_simulation_rules_text(text: str, source: str = "<rules>") -> Rules:
    """Rules for every journey, for the simulator: a rules file, or the older form without kind
    and version (quiet hours and frequency caps alone), which cannot be deployed."""
    reader = _Reader(_Document(text, source))
    root = reader.mapping(reader.doc.root, ())
    if "kind" in root:
        return reader.rules_file().rules
    rules = reader.rules(root, ())
    reader.check_keys()
    return rules


def _message_steps(steps: dict[str, Step]) -> list[str]:
    return [step_id for step_id, step in steps.items() if isinstance(step, MessageStep)]
