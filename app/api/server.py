"""The operator surface over HTTP: journeys with versions, events for services that cannot speak
Kafka, transactional sends, the flow picture with live figures, a user's timeline, metrics, health
and readiness.

Every route but health, readiness, the one-click unsubscribe and the provider callbacks needs
`Authorization: Bearer <token>` with the scope ROUTE_SCOPES names (app/api/auth.py); with no token
configured they are refused rather than left open. Users' addresses are redacted unless the token
has the `pii` scope. Bodies are size-limited and validated; nothing in a journey file can run code
(conditions are structured, templates sandboxed). Rules for every journey (quiet hours, frequency
caps) are versioned, drafted and published like journeys.

Public routes: the unsubscribe link's sealed token is its authority, and each provider callback
(`/callbacks/...`) is verified by its provider's signature (app/callbacks/providers.py)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from html import escape
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE

from app.api.auth import (
    ADMIN,
    READ,
    WRITE,
    ApiToken,
    authenticate,
    credentials,
    parse_tokens,
)
from app.api.figures import CONTENT_TYPES, RangeError, date_range, export_format, export_text
from app.api.metrics import exposition, read_snapshots
from app.api.readiness import readiness
from app.api.redaction import redact
from app.authoring.templates import raise_all, template_errors, template_store
from app.callbacks.handler import DeliveryEvents
from app.callbacks.providers import (
    GENERIC_CHANNELS,
    SENDGRID_SIGNATURE_HEADER,
    SENDGRID_TIMESTAMP_HEADER,
    CallbackError,
    parse_generic,
    parse_sendgrid,
    sendgrid_public_key,
    sendgrid_refusal,
)
from app.config import ApiSettings, SenderSettings, Settings
from app.dispatch.transactional import SendRequest, SendRequestError
from app.dispatch.unsubscribe import TokenError, Unsubscribe, UnsubscribeLinks, open_token
from app.engine import JourneyError, VersionedRules, load_definition_text
from app.engine.graph import FlowView, edge_counts, html_page, split_variants
from app.keyspace import Keyspace
from app.redis_client import open_redis
from app.sender import signing
from app.sender.channels import channels_from
from app.sender.preview import (
    PreviewError,
    preview,
    preview_data,
    send_test,
    stored_journey,
    stored_user,
)
from app.sender.templates import RenderError
from app.store.analytics import (
    audience_per_leaf,
    conversions,
    figure_rows,
    step_figures,
    user_timeline,
)
from app.store.journeys import (
    ARCHIVED,
    DRAFT,
    PUBLISHED,
    Change,
    DeployedJourney,
    DeployError,
    JourneyRegistry,
    UnknownVersion,
)
from app.store.mongo import close_client, new_client
from app.store.rules import RulesRegistry
from app.store.schema import ensure_indexes
from app.store.suppressions import SuppressionList
from app.store.users import UserStore
from app.streams.producer import new_producer
from app.topics import RecordError, load_contract

PUBLIC = "public"
# The scope each route needs (a HEAD needs its GET's). Public: health and readiness, and the
# routes whose authority is in the request: the unsubscribe link's sealed token, the provider's
# signature on a callback. Reads need read; what sends or deploys needs write; what stops
# journeys or users in them, or changes the rules of every journey, needs admin. A route
# missing here needs admin.
ROUTE_SCOPES: dict[tuple[str, str], str] = {
    ("GET", "/health"): PUBLIC,
    ("GET", "/ready"): PUBLIC,
    ("GET", "/metrics"): READ,
    ("GET", "/journeys"): READ,
    ("POST", "/journeys"): WRITE,
    ("POST", "/journeys/validate"): READ,
    ("GET", "/journeys/{journey_id}"): READ,
    ("POST", "/journeys/{journey_id}/versions/{version}/publish"): WRITE,
    ("POST", "/journeys/{journey_id}/versions/{version}/archive"): ADMIN,
    ("POST", "/journeys/{journey_id}/pause"): ADMIN,
    ("POST", "/journeys/{journey_id}/resume"): ADMIN,
    ("GET", "/journeys/{journey_id}/flow"): READ,
    ("GET", "/journeys/{journey_id}/conversions"): READ,
    ("GET", "/journeys/{journey_id}/audience"): READ,
    ("GET", "/journeys/{journey_id}/figures"): READ,
    ("GET", "/rules"): READ,
    ("POST", "/rules"): ADMIN,
    ("POST", "/rules/versions/{version}/publish"): ADMIN,
    ("POST", "/rules/versions/{version}/archive"): ADMIN,
    ("POST", "/events"): WRITE,
    ("POST", "/sends"): WRITE,
    ("POST", "/journeys/{journey_id}/steps/{step_id}/test-send"): WRITE,
    ("GET", "/users/{user_id}/timeline"): READ,
    ("GET", "/unsubscribe/{token}"): PUBLIC,
    ("POST", "/unsubscribe/{token}"): PUBLIC,
    ("POST", "/callbacks/sendgrid"): PUBLIC,
    ("POST", "/callbacks/{channel}"): PUBLIC,
}
TOKEN = web.RequestKey("token", ApiToken)
REALM = 'Bearer realm="journeys"'
# How long an idempotency key's first request is remembered: the `send` topic's retention. The
# ledger keeps a sent message from going twice after that too.
SEND_KEY_SECONDS = 7 * 24 * 3600
TEST_SEND_FIELDS = ("to", "user_id", "data", "version", "locale")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, message: str, **details: Any) -> web.Response:
    return _json({"error": message, **details}, status)


def _page(status: int, title: str, body: str) -> web.Response:
    """A small HTML page for people (the unsubscribe pages); `body` is already HTML."""
    text = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title></head><body><h1>{escape(title)}</h1>{body}</body></html>"
    )
    return web.Response(text=text, status=status, content_type="text/html")


def _invalid(error: JourneyError) -> web.Response:
    return _error(422, str(error), where=error.where, line=error.line, expected=error.expected)


def _version_of(request: web.Request) -> int | None:
    try:
        return int(request.match_info["version"])
    except ValueError:
        return None


def required_scope(request: web.Request) -> str:
    """The route's scope; a path no route matches needs read (a valid token, then 404)."""
    resource = request.match_info.route.resource
    if resource is None:
        return READ
    method = "GET" if request.method == "HEAD" else request.method
    return ROUTE_SCOPES.get((method, resource.canonical), ADMIN)


def bearer_auth(
    tokens: tuple[ApiToken, ...],
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        scope = required_scope(request)
        if scope == PUBLIC:
            return await handler(request)
        if not tokens:
            return _error(403, "refused: no API token is configured (API_TOKENS or API_TOKEN)")
        header = request.headers.get("Authorization")
        token = authenticate(tokens, header or "")
        if token is None:
            if header is None:
                message = "expected Authorization: Bearer <token>"
            elif credentials(header) is None:
                message = "expected Authorization: Bearer <token>, not a bare token or other scheme"
            else:
                message = "the bearer token is not valid"
            refusal = _error(401, message, required_scope=scope)
            refusal.headers["WWW-Authenticate"] = (
                REALM if header is None else f'{REALM}, error="invalid_token"'
            )
            return refusal
        if not token.allows(scope):
            refusal = _error(
                403,
                f"this route needs the {scope} scope; token '{token.name}' has {token.scopes()}",
                required_scope=scope,
            )
            refusal.headers["WWW-Authenticate"] = (
                f'{REALM}, error="insufficient_scope", scope="{scope}"'
            )
            return refusal
        request[TOKEN] = token
        return await handler(request)

    return middleware


def _shown(request: web.Request, data: Any) -> Any:
    """`data` as the request's token may see it: addresses redacted unless it has pii."""
    return data if request[TOKEN].pii else redact(data)


class Api:
    def __init__(self, settings: Settings, api_settings: ApiSettings) -> None:
        self.settings = settings
        self.api_settings = api_settings
        # A bad token entry stops the API at start rather than leaving its client refused.
        self.tokens = parse_tokens(api_settings.tokens, api_settings.token)
        # A bad key stops the API at start rather than refusing every callback later.
        self.sendgrid_key = (
            sendgrid_public_key(api_settings.sendgrid_public_key)
            if api_settings.sendgrid_public_key
            else None
        )

    def app(self) -> web.Application:
        app = web.Application(
            middlewares=[bearer_auth(self.tokens)],
            client_max_size=self.api_settings.max_body_bytes,
        )
        app.cleanup_ctx.append(self._connections)
        app.add_routes(
            [
                web.get("/health", self.health),
                web.get("/ready", self.ready),
                web.get("/metrics", self.metrics),
                web.get("/journeys", self.list_journeys),
                web.post("/journeys", self.create_draft),
                web.post("/journeys/validate", self.validate),
                web.get("/journeys/{journey_id}", self.show_journey),
                web.post("/journeys/{journey_id}/versions/{version}/publish", self.publish),
                web.post("/journeys/{journey_id}/versions/{version}/archive", self.archive),
                web.post("/journeys/{journey_id}/pause", self.pause),
                web.post("/journeys/{journey_id}/resume", self.resume),
                web.get("/journeys/{journey_id}/flow", self.flow),
                web.get("/journeys/{journey_id}/conversions", self.conversions),
                web.get("/journeys/{journey_id}/audience", self.audience),
                web.get("/journeys/{journey_id}/figures", self.figures),
                web.get("/rules", self.list_rules),
                web.post("/rules", self.create_rules_draft),
                web.post("/rules/versions/{version}/publish", self.publish_rules),
                web.post("/rules/versions/{version}/archive", self.archive_rules),
                web.post("/events", self.post_event),
                web.post("/sends", self.transactional_send),
                web.post("/journeys/{journey_id}/steps/{step_id}/test-send", self.test_send),
                web.get("/users/{user_id}/timeline", self.timeline),
                web.get("/unsubscribe/{token}", self.unsubscribe_page),
                web.post("/unsubscribe/{token}", self.unsubscribe),
                web.post("/callbacks/sendgrid", self.sendgrid_callback),
                web.post("/callbacks/{channel}", self.generic_callback),
            ]
        )
        return app

    async def _connections(self, app: web.Application):  # type: ignore[no-untyped-def]
        self.mongo = new_client(self.settings)
        self.db = self.mongo[self.settings.mongo_db]
        self.registry = JourneyRegistry(self.db)
        self.rules = RulesRegistry(self.db)
        self.users = UserStore(self.db, self.settings.mongo_bulk_ops)
        self.suppressions = SuppressionList(self.db)
        await ensure_indexes(self.db)
        self.redis = await open_redis(self.settings)
        self.keys = Keyspace(self.settings.redis_prefix)
        self.templates = template_store()
        self.producer = new_producer(self.settings)
        await self.producer.start()
        sender_settings = SenderSettings()
        self.channels = channels_from(sender_settings)
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=sender_settings.timeout_seconds)
        )
        self.delivery_events = DeliveryEvents(self.settings, self.db, self.redis, self.producer)
        yield
        await self.session.close()
        await self.producer.stop()
        await self.redis.aclose()
        await close_client(self.mongo)

    # --- health ----------------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        return _json({"status": "ok"})

    async def ready(self, request: web.Request) -> web.Response:
        ready, checks = await readiness(
            {
                "kafka": self.producer.client.fetch_all_metadata,
                "mongo": lambda: self.db.command("ping"),
                "redis": self.redis.ping,
            }
        )
        return _json({"ready": ready, "checks": checks}, 200 if ready else 503)

    # --- journeys --------------------------------------------------------------------------

    async def list_journeys(self, request: web.Request) -> web.Response:
        return _json(
            [
                {
                    "id": d.journey.id,
                    "version": d.journey.version,
                    "name": d.journey.name,
                    "status": d.status,
                    "deployed_at": d.deployed_at.isoformat(),
                }
                for d in await self.registry.list()
            ]
        )

    async def show_journey(self, request: web.Request) -> web.Response:
        journey_id = request.match_info["journey_id"]
        versions = [d for d in await self.registry.list() if d.journey.id == journey_id]
        if not versions:
            return _error(404, f"no journey '{journey_id}'")
        sources = {d["version"]: d["source"] for d in await self.registry.versions(journey_id)}
        return _json(
            {
                "id": journey_id,
                "versions": [
                    {
                        "version": d.journey.version,
                        "status": d.status,
                        "source": sources[d.journey.version],
                    }
                    for d in versions
                ],
            }
        )

    async def _body_text(self, request: web.Request) -> str:
        raw = await request.read()
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise web.HTTPBadRequest(text="the body must be UTF-8 text (YAML or JSON)") from None

    async def validate(self, request: web.Request) -> web.Response:
        """A journey, with its templates as `journeys validate` checks them, or a rules file
        (`kind: rules`)."""
        text = await self._body_text(request)
        try:
            loaded = load_definition_text(text, "request body")
            if not isinstance(loaded, VersionedRules):
                raise_all(template_errors(loaded, text, "request body", template_store()))
        except JourneyError as error:
            return _invalid(error)
        if isinstance(loaded, VersionedRules):
            return _json({"valid": True, "kind": "rules", "version": loaded.version})
        return _json({"valid": True, "kind": "journey", "id": loaded.id, "version": loaded.version})

    async def create_draft(self, request: web.Request) -> web.Response:
        """A new version is a draft (201); the text of a deployed version answers with that
        version, its status unchanged (200)."""
        try:
            deployed = await self.registry.deploy(
                await self._body_text(request), "request body", DRAFT
            )
        except JourneyError as error:
            return _invalid(error)
        except DeployError as error:
            return _error(409, str(error))
        journey = deployed.journey
        return _json(
            {"id": journey.id, "version": journey.version, "status": deployed.status},
            201 if deployed.created else 200,
        )

    async def _lifecycle(
        self, request: web.Request, operation: Callable[[bool], Awaitable[Change]]
    ) -> web.Response:
        """Runs a lifecycle operation; `?exit_users=true` makes the users inside the version
        exit at their next input."""
        exit_users = request.query.get("exit_users", "false")
        if exit_users not in ("true", "false"):
            return _error(400, "exit_users must be true or false")
        try:
            change = await operation(exit_users == "true")
        except UnknownVersion as error:
            return _error(404, str(error))
        except DeployError as error:
            return _error(409, str(error))
        return _json(change.to_json())

    async def publish(self, request: web.Request) -> web.Response:
        """Publishes a version (a draft, or an older one: a roll back); the version published
        before is archived, its users finishing it."""
        journey_id, version = request.match_info["journey_id"], _version_of(request)
        if version is None:
            return _error(400, "the version must be a whole number")
        return await self._lifecycle(request, lambda _: self.registry.publish(journey_id, version))

    async def archive(self, request: web.Request) -> web.Response:
        journey_id, version = request.match_info["journey_id"], _version_of(request)
        if version is None:
            return _error(400, "the version must be a whole number")
        return await self._lifecycle(
            request, lambda exit_users: self.registry.archive(journey_id, version, exit_users)
        )

    async def pause(self, request: web.Request) -> web.Response:
        journey_id = request.match_info["journey_id"]
        return await self._lifecycle(
            request, lambda exit_users: self.registry.pause(journey_id, exit_users)
        )

    async def resume(self, request: web.Request) -> web.Response:
        journey_id = request.match_info["journey_id"]
        return await self._lifecycle(
            request, lambda exit_users: self.registry.resume(journey_id, exit_users)
        )

    async def flow(self, request: web.Request) -> web.Response:
        """The flow page with each step's figures over `since`/`until` (all time by default),
        narrowed to one split variant (`variant=split=branch`) when asked."""
        chosen, versions = await self._version_asked(request)
        if chosen is None:
            return _error(404, versions)
        journey = chosen.journey
        try:
            since, until = date_range(request.query)
        except RangeError as error:
            return _error(400, str(error), where=error.where, expected=error.expected)
        variants = split_variants(journey)
        variant = request.query.get("variant", "")
        if variant and variant not in variants:
            return _error(
                400,
                f"no variant '{variant}' in version {journey.version} of '{journey.id}'",
                where="variant",
                expected=list(variants),
            )
        figures = await step_figures(
            self.db, journey.id, journey.version, journey.start, since, until
        )
        view = FlowView(
            versions=versions,
            since=request.query.get("since", ""),
            until=request.query.get("until", ""),
            variants=variants,
            variant=variant,
        )
        page = html_page(journey, figures, edge_counts(journey, figures), view)
        return web.Response(text=page, content_type="text/html")

    async def audience(self, request: web.Request) -> web.Response:
        """For each leaf of each yes/no decision tree: the query selecting its users, and how
        many it selects now (`journeys audience`)."""
        chosen, versions = await self._version_asked(request)
        if chosen is None:
            return _error(404, versions)
        journey = chosen.journey
        leaves = await audience_per_leaf(self.users, journey, datetime.now(UTC))
        return _json({"id": journey.id, "version": journey.version, "leaves": leaves})

    async def _version_asked(
        self, request: web.Request
    ) -> tuple[DeployedJourney, tuple[tuple[int, str], ...]] | tuple[None, str]:
        """The version `?version=` names, else the newest, with every version and its status;
        or None and why not."""
        journey_id = request.match_info["journey_id"]
        deployed = [d for d in await self.registry.list() if d.journey.id == journey_id]
        if not deployed:
            return None, f"no journey '{journey_id}'"
        wanted = request.query.get("version")
        chosen = max(
            (d for d in deployed if wanted is None or str(d.journey.version) == wanted),
            key=lambda d: d.journey.version,
            default=None,
        )
        if chosen is None:
            return None, f"no version {wanted} of journey '{journey_id}'"
        versions = tuple(sorted((d.journey.version, d.status) for d in deployed))
        return chosen, versions

    async def conversions(self, request: web.Request) -> web.Response:
        """Entries and conversions per version, messaged and holdout, and per split variant,
        over `since`/`until` (all time by default)."""
        journey_id = request.match_info["journey_id"]
        deployed = {
            d.journey.version: d.journey
            for d in await self.registry.list()
            if d.journey.id == journey_id
        }
        if not deployed:
            return _error(404, f"no journey '{journey_id}'")
        try:
            since, until = date_range(request.query)
        except RangeError as error:
            return _error(400, str(error), where=error.where, expected=error.expected)
        versions = await conversions(self.db, journey_id, since, until, deployed)
        return _json({"id": journey_id, "versions": versions})

    async def figures(self, request: web.Request) -> web.Response:
        """The export: every figure per version, step and hour over `since`/`until`, as
        `format=json` (the default) or `csv`."""
        journey_id = request.match_info["journey_id"]
        if not any(d.journey.id == journey_id for d in await self.registry.list()):
            return _error(404, f"no journey '{journey_id}'")
        try:
            since, until = date_range(request.query)
            chosen = export_format(request.query.get("format"))
        except RangeError as error:
            return _error(400, str(error), where=error.where, expected=error.expected)
        rows = await figure_rows(self.db, journey_id, since, until)
        return web.Response(
            text=export_text(journey_id, since, until, rows, chosen),
            content_type=CONTENT_TYPES[chosen],
        )

    # --- rules for every journey ----------------------------------------------------------

    async def list_rules(self, request: web.Request) -> web.Response:
        return _json(
            [
                {
                    "version": d.rules.version,
                    "status": d.status,
                    "summary": d.rules.rules.describe(),
                    "deployed_at": d.deployed_at.isoformat(),
                    "source": d.source,
                }
                for d in await self.rules.list()
            ]
        )

    async def create_rules_draft(self, request: web.Request) -> web.Response:
        """A new version is a draft (201); the text of a deployed version answers with that
        version, its status unchanged (200)."""
        try:
            deployed = await self.rules.deploy(
                await self._body_text(request), "request body", DRAFT
            )
        except JourneyError as error:
            return _invalid(error)
        except DeployError as error:
            return _error(409, str(error))
        return _json(
            {"version": deployed.rules.version, "status": deployed.status},
            201 if deployed.created else 200,
        )

    async def _set_rules_status(self, request: web.Request, status: str) -> web.Response:
        try:
            version = int(request.match_info["version"])
        except ValueError:
            return _error(400, "the version must be a whole number")
        if not await self.rules.set_status(version, status):
            return _error(404, f"no version {version} of the rules")
        return _json({"version": version, "status": status})

    async def publish_rules(self, request: web.Request) -> web.Response:
        return await self._set_rules_status(request, PUBLISHED)

    async def archive_rules(self, request: web.Request) -> web.Response:
        return await self._set_rules_status(request, ARCHIVED)

    # --- events, timelines -----------------------------------------------------------------

    async def post_event(self, request: web.Request) -> web.Response:
        try:
            event = await self._publish_event(await request.read())
        except RecordError as error:
            return _error(400, str(error), where=error.where, expected=error.expected)
        return _json({"accepted": event["event_id"]}, 202)

    async def _publish_event(self, raw: bytes) -> dict[str, Any]:
        """Checks a user-events record against its contract and publishes it, keyed by user."""
        contract = load_contract("user-events")
        event = contract.decode(raw, self.api_settings.max_body_bytes)
        await self.producer.send_and_wait(
            self.settings.topic("user-events"), orjson.dumps(event), key=contract.key_of(event)
        )
        return event

    # --- one-click unsubscribe (RFC 8058), public: the sealed token is the authority ------

    def _open_unsubscribe(self, request: web.Request) -> Unsubscribe | web.Response:
        try:
            return open_token(
                self.settings.unsubscribe_secret, request.match_info["token"], datetime.now(UTC)
            )
        except TokenError as error:
            return _page(400, "This unsubscribe link does not work", f"{error}.")

    async def unsubscribe_page(self, request: web.Request) -> web.Response:
        """What a person who follows the link sees: a button that POSTs. A GET changes nothing,
        as link scanners and previews follow GETs."""
        opened = self._open_unsubscribe(request)
        if isinstance(opened, web.Response):
            return opened
        form = (
            f'<form method="post" action="/unsubscribe/{escape(request.match_info["token"])}">'
            '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
            '<button type="submit">Unsubscribe</button></form>'
        )
        return _page(200, f"Unsubscribe from {opened.what}?", form)

    async def unsubscribe(self, request: web.Request) -> web.Response:
        """The one-click POST (a mailbox provider's, body `List-Unsubscribe=One-Click`, or the
        page's button): the opt-out (or the address's suppression) is stored before the answer,
        so the sender honours it from now on, then the subscription change is published on
        user-events with an id of the message, so a repeated click is one event."""
        opened = self._open_unsubscribe(request)
        if isinstance(opened, web.Response):
            return opened
        now = datetime.now(UTC)
        if opened.topic is not None:
            await self.suppressions.opt_out(opened.user_id, opened.topic, now)
        elif opened.address is not None:
            await self.suppressions.add(opened.channel, opened.address, opened.reason, now)
        await self._publish_event(orjson.dumps(opened.event(now)))
        return _page(200, f"You are unsubscribed from {opened.what}", "")

    async def transactional_send(self, request: web.Request) -> web.Response:
        """One message to one user now, on the sender's path (202). A repeat of an idempotency
        key's request publishes the same record again (200: the sender's ledger delivers it once,
        and a request lost before its publish is not lost); another request with a key already
        used is refused (409). A request that cannot be sent (400, 422) does not use its key."""
        try:
            send = SendRequest.parse(await request.read())
        except SendRequestError as error:
            return _error(400, str(error), where=error.where, expected=error.expected)
        if not self.templates.exists(send.template):
            return _error(
                422,
                f"template: expected a template in {self.templates.directory}",
                where="template",
                expected=f"a template in {self.templates.directory}",
            )
        user = (await self.users.load_many([send.user_id]))[send.user_id].state
        now = datetime.now(UTC)
        try:
            record = send.record(user.attributes, user.locale, now)
            (recipient,) = record.recipients
            self.templates.render(send.template, recipient.locale, recipient.variables)
        except SendRequestError as error:
            return _error(422, str(error), where=error.where, expected=error.expected)
        except RenderError as error:
            return _error(422, f"data: {error}", where="data", expected="the template's variables")
        key = self.keys.transactional_send(send.dispatch_id)
        first = orjson.dumps({"digest": send.digest, "send_at": now.isoformat()})
        created = bool(await self.redis.set(key, first, nx=True, ex=SEND_KEY_SECONDS))
        if not created and (remembered := await self.redis.get(key)) is not None:
            before = orjson.loads(remembered)
            if before["digest"] != send.digest:
                return _error(
                    409,
                    "idempotency_key: used before by another request",
                    where="idempotency_key",
                    expected="a key no other request used",
                )
            # The first request's time, so the record is the first one again (same batch id).
            send_at = datetime.fromisoformat(before["send_at"])
            record = send.record(user.attributes, user.locale, send_at)
        await self.producer.send_and_wait(
            self.settings.topic("send"),
            orjson.dumps(record.to_record()),
            key=record.batch_id.encode(),
        )
        return _json(
            {"dispatch_id": send.dispatch_id, "repeat": not created}, 202 if created else 200
        )

    async def test_send(self, request: web.Request) -> web.Response:
        """A journey step's message, rendered for a stored user (`user_id`) or a given one
        (`data`, as `journeys preview --data` reads), delivered once to `to` through the real
        channel, marked `[TEST] ` and `test:`; the user's state, the ledger and the send topic
        are left alone. `version` picks a deployed version, else the published one."""
        try:
            fields = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            fields = None
        if not isinstance(fields, dict) or set(fields) - set(TEST_SEND_FIELDS):
            return _error(400, f"body: expected a JSON object of {', '.join(TEST_SEND_FIELDS)}")
        to, version, locale = fields.get("to"), fields.get("version"), fields.get("locale")
        if not isinstance(to, str) or not 1 <= len(to) <= 2048:
            return _error(400, "to: expected the test recipient's address", where="to")
        if ("user_id" in fields) == ("data" in fields):
            return _error(400, "expected exactly one of user_id and data", where="user_id")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            return _error(400, "version: expected a whole number", where="version")
        if locale is not None and not isinstance(locale, str):
            return _error(400, "locale: expected a locale such as fr-CA", where="locale")
        now = datetime.now(UTC)
        try:
            journey = await stored_journey(self.registry, request.match_info["journey_id"], version)
            step_id = request.match_info["step_id"]
            if "data" in fields:
                shown = preview_data(journey, step_id, fields["data"], self.templates, now)
            else:
                user = await stored_user(self.users, str(fields["user_id"]))
                shown = preview(journey, step_id, user, self.templates, now)
        except PreviewError as error:
            status = 404 if error.where in ("journey", "version", "step", "user") else 400
            return _error(status, str(error), where=error.where, expected=error.expected)
        try:
            links = UnsubscribeLinks.of(self.settings)
            sent = await send_test(self.session, self.channels, shown, to, links, locale)
        except RenderError as error:
            return _error(422, str(error), where="template", expected="a template that renders")
        except PreviewError as error:
            return _error(502, str(error), where=error.where, expected=error.expected)
        return _json(
            _shown(
                request,
                {
                    "dispatch_id": sent.dispatch_id,
                    "channel": sent.channel,
                    "to": sent.to,
                    "locale": sent.message.locale,
                    "subject": sent.message.subject,
                },
            )
        )

    # --- provider callbacks ----------------------------------------------------------------

    async def sendgrid_callback(self, request: web.Request) -> web.Response:
        """SendGrid's Signed Event Webhook: 403 unless signed with the configured key within the
        tolerance; each event Journeys sent is published once (200, with counts)."""
        body = await request.read()
        refusal = sendgrid_refusal(
            self.sendgrid_key,
            request.headers.get(SENDGRID_SIGNATURE_HEADER, ""),
            request.headers.get(SENDGRID_TIMESTAMP_HEADER, ""),
            body,
            time.time(),
            self.api_settings.callback_tolerance_seconds,
        )
        if refusal is not None:
            return _error(403, refusal)
        try:
            parsed = parse_sendgrid(body)
        except CallbackError as error:
            return _error(400, str(error), where=error.where, expected=error.expected)
        results = Counter([await self.delivery_events.handle(e) for e in parsed.events])
        return _json({**results, "skipped": parsed.skipped})

    async def generic_callback(self, request: web.Request) -> web.Response:
        """One report of an SMS or webhook provider in the generic format, signed as outgoing
        webhooks are with CALLBACK_SECRET: 202 with what became of it."""
        channel = request.match_info["channel"]
        if channel not in GENERIC_CHANNELS:
            return _error(404, f"no callbacks for '{channel}': sendgrid, sms or webhook")
        body = await request.read()
        if not signing.verify(
            self.api_settings.callback_secret,
            request.headers.get(signing.SIGNATURE_HEADER, ""),
            body,
            time.time(),
            self.api_settings.callback_tolerance_seconds,
        ):
            return _error(403, f"a valid {signing.SIGNATURE_HEADER} is required")
        try:
            event = parse_generic(channel, body)
        except CallbackError as error:
            return _error(400, str(error), where=error.where, expected=error.expected)
        return _json({"result": await self.delivery_events.handle(event)}, 202)

    async def timeline(self, request: web.Request) -> web.Response:
        user_id = request.match_info["user_id"]
        timeline = await user_timeline(self.db, user_id)
        return _json({"user_id": user_id, "timeline": _shown(request, timeline)})

    # --- metrics ---------------------------------------------------------------------------

    async def metrics(self, request: web.Request) -> web.Response:
        snapshots = await read_snapshots(self.redis, self.keys)
        return web.Response(body=exposition(snapshots), headers={"Content-Type": CONTENT_TYPE})
