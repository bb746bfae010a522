"""What the differential tests, the fault suite and the long differential benchmark share: the
simulator as the oracle (what the provider must receive), what the provider stub did receive,
publishing events at their own times, and a group of generated cases run through a live pipeline.

Several cases run in one pipeline at once, their journeys deployed together: the oracle is the
simulator over all of them, so one case's events may enter another case's journeys. Live-scale
events are published at their own times (rebased to when the run starts), and kept clear of the
same user's timers: no pipeline can order an event and a timer due in the same second the way
the simulator does."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from app.engine import (
    Analytics,
    JourneyEngine,
    Send,
    UserEvent,
    load_journey_text,
    load_simulation_rules_text,
)
from app.engine.simulator import Simulator
from app.sender.stub import ProviderStub, serve
from app.sender.templates import RenderError, TemplateStore
from app.store.mongo import close_client, new_client
from app.streams.producer import new_producer
from app.streams.publish import event_millis, rebased
from tests.generated import LIVE, Case, generate_case
from tests.generated.events import space_from_timers
from tests.pipeline import Pipeline
from tests.sender.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = TemplateStore(ROOT / "templates", "en")
# An event and a timer of one user this close could be applied in either order by the workers.
MARGIN = timedelta(seconds=1.5)
# How long before the events start the cases' journeys are deployed and loaded.
LEAD = timedelta(seconds=6)
READY_JOURNEY = """
id: ready-{n}
version: 1
entry: {{event: ready_{n}}}
steps:
  ping: {{type: message, channel: webhook, template: generic_offer}}
"""
# dispatch id, recipient, channel, template, locale, text: the rendered text the provider gets
# beyond its template's name (the subject; a push's and a default webhook's body too), so the
# variables the workers put in a send (a digest's counts and latest events) are compared too.
# An email's text parts are left out: the sender adds to them what the simulator does not know.
Delivery = tuple[str, str, str, str, str, str]
Mark = tuple[str, str, str, str | None, str, str | None]  # user, journey, entry, step, event, why


def time_of(event: dict) -> datetime:
    return datetime.fromisoformat(event["at"])


# --- the oracle --------------------------------------------------------------------------------


def deliverable(send: Send) -> Delivery | None:
    """What the provider receives for a send: None when the sender has nowhere to send it (no
    email address, push token or phone number) or its template cannot be rendered with the
    user's values. An SMS (Twilio's form) carries neither template nor locale: its rendered
    text stands for both."""
    if send.channel in ("email", "push", "sms") and not send.address:
        return None
    try:
        rendered = TEMPLATES.render(send.template_id, send.locale, send.variables)
    except RenderError:
        return None
    if send.channel == "sms":
        return (send.dispatch_id, str(send.address), send.channel, rendered.body, "", "")
    recipient = send.address if send.channel in ("email", "push") else send.user_id
    own_body = send.webhook is not None and send.webhook.body is not None
    text = rendered.subject
    if send.channel == "push" or (send.channel == "webhook" and not own_body):
        text += f"\n{rendered.body}"
    return (
        send.dispatch_id,
        str(recipient),
        send.channel,
        send.template_id,
        rendered.locale,
        text,
    )


def marks_of(effects: list[Analytics]) -> set[Mark]:
    return {
        (e.user_id, e.journey_id, e.entry_id, e.step_id, e.event, e.reason)
        for e in effects
        if e.event in ("suppressed", "exited")
    }


@dataclass(frozen=True)
class Prediction:
    """What the simulator says the provider receives and the timeline shows, and when the last
    of it happens."""

    deliveries: set[Delivery]
    marks: set[Mark]
    sends: list[Send]
    last_at: datetime | None  # the last effect's time, None when nothing happens


def oracle(engine: JourneyEngine, events: list[dict], until: datetime) -> Prediction:
    simulator = Simulator(engine)
    simulator.feed([UserEvent.from_record(e) for e in events])
    simulator.run_until(until)
    sends = [e.effect for e in simulator.effects if isinstance(e.effect, Send)]
    analytics = [e.effect for e in simulator.effects if isinstance(e.effect, Analytics)]
    deliveries = {d for d in map(deliverable, sends) if d is not None}
    last_at = max((e.at for e in simulator.effects), default=None)
    return Prediction(deliveries, marks_of(analytics), sends, last_at)


# --- what the pipeline did ----------------------------------------------------------------------


def received(stub: ProviderStub) -> set[Delivery]:
    """What the provider stub received, as (dispatch id, recipient, channel, template, locale,
    text), the ready pings left out."""
    deliveries = set()
    for dispatch_id, delivery in stub.delivered.items():
        body, channel = delivery["body"], delivery["channel"]
        if channel == "email":
            meta = body["custom_args"]
            deliveries.add(
                (
                    dispatch_id,
                    body["personalizations"][0]["to"][0]["email"],
                    channel,
                    meta["template"],
                    meta["locale"],
                    body["subject"],
                )
            )
        elif channel == "push":
            data, text = body["data"], f"{body['title']}\n{body['body']}"
            deliveries.add(
                (dispatch_id, body["to"], channel, data["template"], data["locale"], text)
            )
        elif channel == "sms":
            deliveries.add((dispatch_id, body["To"], channel, body["Body"], "", ""))
        else:
            text = body["subject"] + (f"\n{body['body']}" if "body" in body else "")
            deliveries.add(
                (dispatch_id, body["user_id"], channel, body["template"], body["locale"], text)
            )
    return {d for d in deliveries if not d[1].startswith("ready-")}


async def timeline_marks(pipeline: Pipeline) -> set[Mark]:
    client = new_client(pipeline.settings)
    try:
        cursor = client[pipeline.settings.mongo_db]["timeline"].find(
            {"kind": "analytics", "event": {"$in": ["suppressed", "exited"]}}
        )
        return {
            (d["user_id"], d["journey_id"], d["entry_id"], d["step_id"], d["event"], d["reason"])
            async for d in cursor
        }
    finally:
        await close_client(client)


@asynccontextmanager
async def provider(pipeline: Pipeline) -> AsyncIterator[ProviderStub]:
    """A provider stub for every channel, the pipeline's worker and sender pointed at it."""
    stub = ProviderStub()
    port = free_port()
    runner = await serve(stub, "127.0.0.1", port)
    url = f"http://127.0.0.1:{port}"
    pipeline.env.update(
        EMAIL_API_URL=f"{url}/email",
        PUSH_API_URL=f"{url}/push",
        WEBHOOK_URL=f"{url}/webhook",
        WEBHOOK_SECRET=stub.webhook_secret,
        SMS_API_URL=url,
        SMS_ACCOUNT_SID=stub.sms_account_sid,
        SMS_AUTH_TOKEN=stub.sms_auth_token,
        SENDER_TIMEOUT="2",
    )
    try:
        yield stub
    finally:
        await runner.cleanup()


async def ready(pipeline: Pipeline, stub: ProviderStub, tmp_path: Path, n: int) -> None:
    """Deploys a ping journey and waits for its message: the worker has loaded every journey
    deployed before it, and the sender delivers."""
    path = tmp_path / f"ready-{n}.yaml"
    path.write_text(READY_JOURNEY.format(n=n))
    await pipeline.deploy(path)
    async with asyncio.timeout(120):
        for attempt in itertools.count():
            if any(d["body"].get("user_id") == f"ready-{n}" for d in stub.delivered.values()):
                return
            # A new id each time: a ping the worker saw before loading the journey is applied.
            ping = {
                "event_id": f"ready-{n}-{attempt}",
                "user_id": f"ready-{n}",
                "name": f"ready_{n}",
                "at": datetime.now(UTC).isoformat(),
            }
            await pipeline.publish([ping])
            await asyncio.sleep(1.5)


async def publish_paced(pipeline: Pipeline, events: list[dict]) -> None:
    """Each record when its time comes (a record out of order right away), in stream order,
    its Kafka timestamp its event's time: when it reached Journeys is then what the simulator
    takes, to the millisecond, however late the producer woke up."""
    producer = new_producer(pipeline.settings)
    await producer.start()
    try:
        topic = pipeline.settings.topic("user-events")
        for event in events:
            wait = (datetime.fromisoformat(event["at"]) - datetime.now(UTC)).total_seconds()
            if wait > 0:
                await asyncio.sleep(wait)
            await producer.send_and_wait(
                topic,
                orjson.dumps(event),
                key=event["user_id"].encode(),
                timestamp_ms=event_millis(event),
            )
    finally:
        await producer.stop()


async def settle(stub: ProviderStub, expected: int, deadline: datetime) -> set[Delivery]:
    """Waits until `expected` deliveries arrived (or `deadline`), then a few seconds for any
    extra one."""
    while len(received(stub)) < expected and datetime.now(UTC) < deadline:
        await asyncio.sleep(0.5)
    await asyncio.sleep(5)
    return received(stub)


async def settle_all(
    pipeline: Pipeline, stub: ProviderStub, prediction: Prediction
) -> tuple[set[Delivery], set[Mark]]:
    """What the provider received and the timeline shows once the pipeline has caught up with
    the prediction: every delivery in, and the timeline holding every predicted mark (exits
    come after the last send, up to a path's delay later), or a minute after the last
    predicted effect."""
    latest = prediction.last_at or datetime.now(UTC)
    got = await settle(stub, len(prediction.deliveries), latest + timedelta(seconds=60))
    deadline = max(latest, datetime.now(UTC)) + timedelta(seconds=60)
    while True:
        timeline = {m for m in await timeline_marks(pipeline) if not m[0].startswith("ready-")}
        if timeline >= prediction.marks or datetime.now(UTC) >= deadline:
            return got, timeline
        await asyncio.sleep(1)


def report(
    title: str,
    expected: set[Delivery],
    got: set[Delivery],
    marks: set[Mark],
    timeline: set[Mark],
    sends: list[Send],
) -> str:
    """A readable difference: what is missing, what is extra, with the simulator's send."""
    by_id = {send.dispatch_id: send for send in sends}
    lines = [title]
    for label, items in (("missing", expected - got), ("unexpected", got - expected)):
        for item in sorted(items):
            send = by_id.get(item[0])
            where = f" ({send.journey_id}/{send.step_id} entry {send.entry_id})" if send else ""
            lines.append(f"  {label} delivery {item}{where}")
    for label, items in (("missing", marks - timeline), ("unexpected", timeline - marks)):
        lines += [f"  {label} on the timeline {item}" for item in sorted(items, key=str)]
    return "\n".join(lines)


# --- a group of generated cases -----------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """A group of generated cases run live, and what the simulator predicted for them."""

    seeds: list[int]
    base: datetime
    cases: list[Case]
    events: list[dict]  # as published
    sends: list[Send]
    expected: set[Delivery]
    got: set[Delivery]
    marks: set[Mark]
    timeline: set[Mark]
    unplayable: list[tuple[int, str]]  # (seed, why) of cases whose events were left out

    @property
    def diverged(self) -> bool:
        return (self.got, self.timeline) != (self.expected, self.marks)

    def title(self) -> str:
        return (
            f"seeds {self.seeds[0]}..{self.seeds[-1]}, base {self.base}: "
            f"{len(self.expected)} deliveries expected, {len(self.got)} received"
        )

    def users_involved(self) -> set[str]:
        """The users of every delivery or timeline mark the two sides disagree on."""
        involved = {item[0] for item in (self.expected ^ self.got) | (self.marks ^ self.timeline)}
        by_id = {send.dispatch_id: send for send in self.sends}
        return {by_id[i].user_id for i in involved if i in by_id} | {
            i for i in involved if i not in by_id
        }

    def divergent_cases(self) -> list[Case]:
        users = self.users_involved()
        return [c for c in self.cases if any(u.startswith(f"g{c.seed}-") for u in users)]

    def explain(self) -> str:
        """The differences, the cases of the users involved, and those users' events as sent."""
        users = self.users_involved()
        difference = report(
            self.title(), self.expected, self.got, self.marks, self.timeline, self.sends
        )
        return "\n".join(
            [difference, "", *(c.describe() for c in self.divergent_cases()), "--- as sent"]
            + [str(e) for e in self.events if e["user_id"] in users]
        )


def deployable_cases(
    seeds: list[int], base: datetime, rules: bool, spacing: timedelta = timedelta(0)
) -> tuple[list[Case], str | None]:
    """The cases of `seeds`, the first starting at `base` and each next one `spacing` later, and
    the first of their global rules files (one rules file applies to every journey)."""
    cases = [generate_case(seed, LIVE, base + i * spacing, rules) for i, seed in enumerate(seeds)]
    return cases, next((case.rules for case in cases if case.rules is not None), None)


async def deploy_cases(
    pipeline: Pipeline, tmp_path: Path, cases: list[Case], rules: str | None
) -> None:
    for case in cases:
        for i, text in enumerate(case.journeys):
            path = tmp_path / f"case-{case.seed}-{i}.yaml"
            path.write_text(text)
            await pipeline.deploy(path)
    if rules is not None:
        await pipeline.deploy_rules(rules)


def engine_of(journeys: list[str], rules: str | None) -> JourneyEngine:
    """The simulator's engine over journey files' text and a rules file's text."""
    return JourneyEngine(
        [load_journey_text(text) for text in journeys],
        load_simulation_rules_text(rules) if rules is not None else None,
    )


def publication_order(streams: list[list[dict]]) -> list[dict]:
    """The records of several streams in the order to publish them: each when its time comes,
    but never before a record that comes before it in its user's stream (an out-of-order record
    goes right after the one it follows, a moved record's followers after it)."""
    keyed = []
    for number, stream in enumerate(streams):
        clock: dict[str, datetime] = {}
        for position, record in enumerate(stream):
            user = record["user_id"]
            clock[user] = max(time_of(record), clock.get(user, time_of(record)))
            keyed.append((clock[user], number, position, record))
    return [record for *_, record in sorted(keyed, key=lambda item: item[:3])]


def space_streams(
    engine: JourneyEngine, streams: dict[int, list[dict]], skip_unplayable: bool = False
) -> tuple[list[dict], list[tuple[int, str]]]:
    """The streams' events kept clear of their users' timers (the streams' users are their own,
    so stream by stream is all of them), at their own times or, when that is too soon to
    publish them so, all moved as little as needed; in publication order. Lists the streams (by
    seed) that cannot be spaced, or raises ValueError for the first one unless
    `skip_unplayable`."""
    shift = timedelta(0)
    unplayable: list[tuple[int, str]] = []
    while True:
        started = datetime.now(UTC)
        spaced: list[list[dict]] = []
        for seed, events in streams.items():
            if seed in dict(unplayable):
                continue
            played = rebased(events, max(time_of(e) for e in events) + shift)
            try:
                spaced.append(space_from_timers(engine, played, MARGIN))
            except ValueError as error:
                if not skip_unplayable:
                    raise ValueError(f"case {seed}: {error}") from error
                unplayable.append((seed, str(error)))
        first = min((time_of(e) for events in spaced for e in events), default=started)
        now = datetime.now(UTC)
        if first >= now + timedelta(seconds=1):
            return publication_order(spaced), unplayable
        shift += now - first + (now - started) + timedelta(seconds=2)


async def run_generated(
    pipeline: Pipeline,
    tmp_path: Path,
    seeds: list[int],
    rules: bool = True,
    skip_unplayable: bool = False,
) -> Outcome:
    """Runs the generated cases of `seeds` at once through the pipeline's worker and sender
    (started here) and returns what the provider received next to what the simulator predicts.
    A case whose events cannot be kept clear of its timers raises ValueError, or with
    `skip_unplayable` has its events left out (its journeys stay deployed) and is listed."""
    async with provider(pipeline) as stub:
        pipeline.start("worker")
        pipeline.start("sender")
        await ready(pipeline, stub, tmp_path, 0)

        # Spacing the events from the timers takes about a second per case before they start.
        planned = (
            datetime.now(UTC).replace(microsecond=0) + LEAD + len(seeds) * timedelta(seconds=1)
        )
        cases, rules_text = deployable_cases(seeds, planned, rules)
        await deploy_cases(pipeline, tmp_path, cases, rules_text)
        await ready(pipeline, stub, tmp_path, 1)

        engine = engine_of([text for case in cases for text in case.journeys], rules_text)
        streams = {case.seed: list(case.events) for case in cases}
        events, unplayable = space_streams(engine, streams, skip_unplayable)
        await publish_paced(pipeline, events)
        last = max(time_of(e) for e in events)
        prediction = oracle(engine, events, last + LIVE.settle)
        got, timeline = await settle_all(pipeline, stub, prediction)
    return Outcome(
        seeds,
        planned,
        cases,
        events,
        prediction.sends,
        prediction.deliveries,
        got,
        prediction.marks,
        timeline,
        unplayable,
    )
