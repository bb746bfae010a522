"""Preview and test send: a journey's message rendered for one user exactly as the sender would
render it (the sender's TemplateStore, and the variables the engine would put in the send, from
`app.engine.engine.send_variables`), and delivered to a test recipient through the real channel.
A test send touches nothing of the real user's: no state, no ledger, no `send` record. It is
marked twice: its subject starts with `[TEST] ` and its dispatch id (the provider's
Idempotency-Key) with `test:`, so a provider's log and an inbox tell it apart.

The user is a stored user (their state: attributes, locale, and, when they are inside the
journey, their entry's event and the step's digest as it stands), or a data file's user: a
mapping of `user_id`, `attributes`, `locale`, `timezone`, `event` (the entry event's properties)
and `events` (`[{name, at, properties}]`, collected by a digest as the engine collects them)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import aiohttp

from app.dispatch.record import Recipient
from app.dispatch.unsubscribe import UnsubscribeLinks
from app.engine import Journey, JourneyEngine, UserEvent, UserState
from app.engine.definitions import MessageStep
from app.engine.digests import collect, restart
from app.engine.engine import ADDRESS_ATTRIBUTE, send_variables, to_millis
from app.engine.lifecycle import PUBLISHED
from app.engine.state import EntryState
from app.sender.channels import Channel, Delivery, PermanentError, SuppressedError, TransientError
from app.sender.templates import RenderedMessage, TemplateStore

TEST_PREFIX = "[TEST] "
DATA_KEYS = ("user_id", "attributes", "locale", "timezone", "event", "events")
PARTS = ("subject", "preheader", "text", "html")


class PreviewError(ValueError):
    """What cannot be previewed or sent: `where` it is, and what was `expected` there."""

    def __init__(self, where: str, found: str, expected: str) -> None:
        super().__init__(f"{where}: found {found}, expected {expected}")
        self.where = where
        self.expected = expected


@dataclass(frozen=True)
class Preview:
    """One step's message for one user: the variables the send would carry, the locale the
    sender would choose from the user's, and the message rendered in any locale asked for."""

    journey: Journey
    step: MessageStep
    user: UserState
    variables: dict[str, Any]
    templates: TemplateStore

    @property
    def locale(self) -> str:
        """The template's locale the sender picks for this user."""
        return self.templates.locale_for(self.step.template, self.user.locale)

    def locales(self) -> list[str]:
        return self.templates.locales(self.step.template)

    def render(
        self,
        locale: str | None = None,
        links: UnsubscribeLinks | None = None,
        *,
        dispatch_id: str = "preview",
        address: str | None = None,
        user_id: str | None = None,
    ) -> RenderedMessage:
        """With `links`, a marketing email gets its unsubscribe link as the sender gives it
        (for `address` and `user_id`, else the user's own)."""
        url = None
        if links is not None:
            attribute = ADDRESS_ATTRIBUTE[self.step.channel]
            url = links.url(
                user_id=user_id or self.user.user_id,
                channel=self.step.channel,
                address=address or (attribute and str(self.user.attributes.get(attribute) or "")),
                topic=self.step.topic,
                dispatch_id=dispatch_id,
                transactional=self.journey.transactional,
                now=datetime.now(UTC),
            )
        return self.templates.render(
            self.step.template, locale or self.user.locale, self.variables, url
        )


def message_step(journey: Journey, step_id: str) -> MessageStep:
    step = journey.steps.get(step_id)
    if not isinstance(step, MessageStep):
        messages = sorted(s.id for s in journey.steps.values() if isinstance(s, MessageStep))
        raise PreviewError(
            "step",
            f"'{step_id}'",
            f"a message step of {journey.key}: {', '.join(messages) or 'none'}",
        )
    return step


def preview(
    journey: Journey, step_id: str, user: UserState, templates: TemplateStore, now: datetime
) -> Preview:
    """The step's message for a stored user: inside the journey, their newest entry's event and
    the step's digest as it stands; else as if they entered now."""
    step = message_step(journey, step_id)
    entries = sorted(user.entries(journey.id).values(), key=lambda e: e.entered_at)
    entry = entries[-1] if entries else _entry(journey, user, to_millis(now), {})
    return Preview(journey, step, user, send_variables(user, entry, step), templates)


def preview_data(
    journey: Journey, step_id: str, data: Any, templates: TemplateStore, now: datetime
) -> Preview:
    """The step's message for a data file's user (see the module's docstring): the attributes
    are applied as an event applies them, and the `events` are what the digest collected since
    the first of them (or now)."""
    step = message_step(journey, step_id)
    if not isinstance(data, Mapping):
        raise PreviewError("data", type(data).__name__, f"a mapping of {', '.join(DATA_KEYS)}")
    for key in data:
        if key not in DATA_KEYS:
            raise PreviewError(f"data.{key}", "an unknown key", f"one of {', '.join(DATA_KEYS)}")
    user_id, attributes = data.get("user_id", "preview-user"), data.get("attributes") or {}
    if not isinstance(user_id, str) or not isinstance(attributes, Mapping):
        raise PreviewError("data", "a bad user_id or attributes", "text and a mapping")
    context = data.get("event") or {}
    if not isinstance(context, Mapping):
        raise PreviewError("data.event", type(context).__name__, "the entry event's properties")
    events = [_event(item, i) for i, item in enumerate(data.get("events") or [])]
    at = to_millis(now)
    update = UserEvent(
        "preview",
        user_id,
        "preview",
        at,
        attributes=dict(attributes),
        timezone=data.get("timezone"),
        locale=data.get("locale"),
    )
    user = JourneyEngine([]).apply(UserState.new(user_id), update, at).state
    since = min((e[1] for e in events), default=at)
    if step.digest is not None:
        restart(user, journey.id, step, since)
        for name, moment, properties in events:
            collect(user, name, moment, properties)
    entry = _entry(journey, user, since, dict(context))
    return Preview(journey, step, user, send_variables(user, entry, step), templates)


def _entry(journey: Journey, user: UserState, at: datetime, context: dict[str, Any]) -> EntryState:
    return EntryState("preview", journey.id, journey.version, at, context=context)


def _event(item: Any, index: int) -> tuple[str, datetime, dict[str, Any]]:
    where = f"data.events.{index}"
    if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
        raise PreviewError(where, repr(item)[:60], "{name, at, properties}")
    try:
        moment = datetime.fromisoformat(str(item.get("at")))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise PreviewError(f"{where}.at", repr(item.get("at")), "a date-time with an offset")
    properties = item.get("properties") or {}
    if not isinstance(properties, Mapping):
        raise PreviewError(f"{where}.properties", type(properties).__name__, "a mapping")
    return item["name"], to_millis(moment.astimezone(UTC)), dict(properties)


@dataclass(frozen=True)
class SentTest:
    dispatch_id: str
    channel: str
    to: str
    message: RenderedMessage


async def send_test(
    session: aiohttp.ClientSession,
    channels: Mapping[str, Channel],
    shown: Preview,
    to: str,
    links: UnsubscribeLinks,
    locale: str | None = None,
) -> SentTest:
    """Delivers the preview's message to `to` through the step's channel, once (no retries),
    with the `[TEST] ` subject and a `test:` dispatch id. A provider's refusal is a
    PreviewError naming it."""
    dispatch_id = f"test:{uuid.uuid4().hex}"
    # Its link unsubscribes the test recipient (as user `test:...`), never the real user.
    rendered = shown.render(locale, links, dispatch_id=dispatch_id, address=to, user_id=dispatch_id)
    message = replace(rendered, subject=TEST_PREFIX + rendered.subject)
    recipient = Recipient(shown.user.user_id, dispatch_id, message.locale, shown.variables, to)
    channel = channels[shown.step.channel]
    delivery = Delivery(dispatch_id, shown.step.channel, recipient, message, shown.step.webhook)
    try:
        await channel.deliver(session, delivery)
    except (PermanentError, TransientError, SuppressedError) as error:
        raise PreviewError(
            "to", f"the provider's answer: {error}", "a provider that takes it"
        ) from None
    return SentTest(dispatch_id, shown.step.channel, to, message)


def parts(message: RenderedMessage) -> dict[str, str | None]:
    """subject, preheader, text and html (None: text only) of a rendered message."""
    return {
        "subject": message.subject,
        "preheader": message.preheader,
        "text": message.body,
        "html": message.html,
    }


async def stored_journey(registry: Any, journey_id: str, version: int | None) -> Journey:
    """A deployed journey (a `JourneyRegistry`'s): its published version, or `version`."""
    deployed = [d for d in await registry.list() if d.journey.id == journey_id]
    if not deployed:
        raise PreviewError("journey", f"'{journey_id}'", "a deployed journey's id or a file")
    chosen = [
        d
        for d in deployed
        if (d.journey.version == version if version is not None else d.status == PUBLISHED)
    ]
    if not chosen:
        have = ", ".join(f"{d.journey.version} ({d.status})" for d in deployed)
        wanted = f"version {version}" if version is not None else "a published version"
        raise PreviewError("version", f"versions {have}", wanted)
    return chosen[0].journey


async def stored_user(users: Any, user_id: str) -> UserState:
    """A user in the store (a `UserStore`'s); one never written is an error, not a blank."""
    stored = (await users.load_many([user_id]))[user_id]
    if stored.version == 0:
        raise PreviewError("user", f"'{user_id}'", "a user in the store")
    state: UserState = stored.state
    return state
