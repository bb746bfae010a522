"""Who may call the API: every route but health, readiness, the unsubscribe link and the provider
callbacks needs `Authorization: Bearer <token>` (the scheme in any case) with its route's scope;
several tokens at once, so one rotates without downtime; users' addresses redacted unless the
token has pii. Through the real server on loopback with the real stores."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from app.api.auth import TokenConfigError
from app.api.redaction import redact
from app.api.server import PUBLIC, ROUTE_SCOPES, Api
from app.config import ApiSettings, Settings
from tests.api.test_api import RULES, api_client, fill_timeline, stack  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {
    "read": "reader-0123456789abcdef",
    "write": "writer-0123456789abcdef",
    "admin": "admin-0123456789abcdef",
    "pii": "support-0123456789abcdef",
}
TOKENS = (
    f"grafana:read:{SECRETS['read']}; ci:write:{SECRETS['write']}; ops:admin:{SECRETS['admin']};"
    f" support:read,pii:{SECRETS['pii']}"
)
LEVELS = ("read", "write", "admin")
JOURNEY = (ROOT / "examples" / "branching.yaml").read_text()
EVENT = orjson.dumps(
    {"event_id": "e-1", "user_id": "u-1", "name": "signed_up", "at": "2026-11-02T09:00:00Z"}
)


def bearer(scope: str, scheme: str = "Bearer") -> dict[str, str]:
    return {"Authorization": f"{scheme} {SECRETS[scope]}"}


async def test_each_scope_reaches_its_routes_and_no_lower_one_does(stack) -> None:  # noqa: F811
    client = await api_client(stack, token="", tokens=TOKENS)
    # In order: what a route needs, then what it answers the lowest token that may call it.
    cases = (
        ("GET", "/journeys", b"", "read", 200),
        ("GET", "/metrics", b"", "read", 200),
        ("POST", "/journeys/validate", RULES.encode(), "read", 200),
        ("GET", "/users/ada/timeline", b"", "read", 200),
        ("POST", "/events", EVENT, "write", 202),
        ("POST", "/journeys", JOURNEY.encode(), "write", 201),
        ("POST", "/journeys/second-purchase/versions/1/publish", b"", "write", 200),
        ("POST", "/journeys/second-purchase/pause", b"", "admin", 200),
        ("POST", "/journeys/second-purchase/versions/1/archive", b"", "admin", 200),
        ("POST", "/rules", RULES.encode(), "admin", 201),
        ("POST", "/rules/versions/1/publish", b"", "admin", 200),
    )
    try:
        for method, path, body, needed, status in cases:
            for lower in LEVELS[: LEVELS.index(needed)]:
                refused = await client.request(method, path, data=body, headers=bearer(lower))
                answer = await refused.json()
                assert refused.status == 403, (path, lower)
                assert answer["required_scope"] == needed and needed in answer["error"]
                assert refused.headers["WWW-Authenticate"] == (
                    f'Bearer realm="journeys", error="insufficient_scope", scope="{needed}"'
                )
            allowed = await client.request(method, path, data=body, headers=bearer(needed))
            assert allowed.status == status, (path, await allowed.text())
        for scope in LEVELS:  # a higher scope has the lower ones
            assert (await client.get("/journeys", headers=bearer(scope))).status == 200
    finally:
        await client.close()


async def test_only_a_bearer_header_in_any_case_is_accepted(stack) -> None:  # noqa: F811
    client = await api_client(stack, token="", tokens=TOKENS)
    secret = SECRETS["read"]
    try:
        for scheme in ("Bearer", "bearer", "BEARER", "bEaReR"):
            assert (await client.get("/journeys", headers=bearer("read", scheme))).status == 200
        missing = await client.get("/journeys")
        assert missing.status == 401 and missing.headers["WWW-Authenticate"] == (
            'Bearer realm="journeys"'
        )
        assert "Authorization: Bearer" in (await missing.json())["error"]
        bare, wrong = "not a bare token or other scheme", "bearer token is not valid"
        for header, wanted in (
            (secret, bare),
            (f"Basic {secret}", bare),
            ("Bearer", bare),
            (f"Bearer {secret} {secret}", bare),
            (f"Bearer {secret[:-1]}", wrong),
            (f"Bearer {secret}x", wrong),
        ):
            refused = await client.get("/journeys", headers={"Authorization": header})
            text = await refused.text()
            assert refused.status == 401, header
            assert refused.headers["WWW-Authenticate"] == (
                'Bearer realm="journeys", error="invalid_token"'
            )
            assert wanted in orjson.loads(text)["error"] and secret[:-1] not in text
    finally:
        await client.close()


async def test_two_tokens_are_valid_at_once_so_one_rotates(stack, monkeypatch) -> None:  # noqa: F811
    old, new = "rotate-old-0123456789abcd", "rotate-new-0123456789abcd"
    monkeypatch.delenv("API_TOKEN", raising=False)
    monkeypatch.setenv("API_TOKENS", f"ci-2026-10:write:{old};ci-2026-11:write:{new}")
    settings = ApiSettings(port=0)
    during = await api_client(stack, token=settings.token, tokens=settings.tokens)
    monkeypatch.setenv("API_TOKENS", f"ci-2026-11:write:{new}")
    after = await api_client(stack, token="", tokens=ApiSettings().tokens)
    try:
        for secret in (old, new):
            answer = await during.post(
                "/events", data=EVENT, headers={"Authorization": f"Bearer {secret}"}
            )
            assert answer.status == 202
        assert (await after.get("/journeys", headers={"Authorization": f"Bearer {new}"})).ok
        gone = await after.get("/journeys", headers={"Authorization": f"Bearer {old}"})
        assert gone.status == 401
    finally:
        await during.close()
        await after.close()


async def test_api_token_alone_is_an_admin_token_that_sees_addresses(stack) -> None:  # noqa: F811
    await fill_timeline(stack)
    client = await api_client(stack, token="single-token", tokens=TOKENS)
    legacy = {"Authorization": "Bearer single-token"}
    try:
        assert (await client.post("/rules", data=RULES, headers=legacy)).status == 201
        timeline = await (await client.get("/users/ada/timeline", headers=legacy)).json()
        assert "ada@x.test" in orjson.dumps(timeline).decode()
        assert (await client.get("/journeys", headers=bearer("read"))).status == 200
    finally:
        await client.close()


async def test_timelines_and_deliveries_show_addresses_only_with_pii(stack) -> None:  # noqa: F811
    await fill_timeline(stack, "failed", "550 5.1.1 <ada@x.test>: mailbox unavailable")
    client = await api_client(stack, token="", tokens=TOKENS)
    try:
        shown = {}
        for scope in ("read", "admin", "pii"):
            answer = await client.get("/users/ada/timeline", headers=bearer(scope))
            assert answer.status == 200
            shown[scope] = next(i for i in (await answer.json())["timeline"] if i["kind"] == "send")
        for scope in ("read", "admin"):  # admin is not pii
            assert shown[scope]["address"] == "a***@x.test"
            assert shown[scope]["delivery"] == {
                "outcome": "failed",
                "attempts": 1,
                "reason": "550 5.1.1 <a***@x.test>: mailbox unavailable",
            }
            assert "ada@x.test" not in orjson.dumps(shown[scope]).decode()
        assert shown["pii"]["address"] == "ada@x.test"
        assert shown["pii"]["delivery"]["reason"] == "550 5.1.1 <ada@x.test>: mailbox unavailable"
        assert shown["pii"]["dispatch_id"] == shown["read"]["dispatch_id"]
    finally:
        await client.close()


async def test_health_ready_unsubscribe_and_callbacks_need_no_token(stack) -> None:  # noqa: F811
    client = await api_client(stack, token="", tokens=TOKENS)
    try:
        assert (await client.get("/health")).status == 200
        assert (await client.get("/ready")).status == 200
        # Their own authority refuses them, not the bearer check.
        assert (await client.get("/unsubscribe/not-a-token")).status == 400
        assert (await client.post("/unsubscribe/not-a-token")).status == 400
        for path in ("/callbacks/sms", "/callbacks/sendgrid"):
            unsigned = await client.post(path, data=b"{}")
            assert unsigned.status == 403 and "WWW-Authenticate" not in unsigned.headers
        # Everything else, HEAD and unknown paths too, needs a token first.
        assert (await client.head("/journeys")).status == 401
        assert (await client.get("/nowhere")).status == 401
        assert (await client.get("/nowhere", headers=bearer("read"))).status == 404
    finally:
        await client.close()


def test_bad_token_settings_stop_the_api_naming_the_entry_never_the_secret() -> None:
    secret = "a-secret-0123456789abcdef"
    for tokens, where in (
        (f"ci:deploy:{secret}", "entry 1 (ci) scopes"),
        (f"ci:pii:{secret}", "entry 1 (ci) scopes"),
        (f"ci:{secret}", "entry 1 (ci)"),
        ("ci:read:short", "entry 1 (ci) secret"),
        (f"a:read:{secret};a:write:x{secret}", "name a"),
        (f"a:read:{secret};b:write:{secret}", "secret of"),
    ):
        with pytest.raises(TokenConfigError) as raised:
            Api(Settings(), ApiSettings(tokens=tokens, port=0))
        assert where in raised.value.where and secret not in str(raised.value), tokens
    assert secret not in repr(ApiSettings(tokens=f"a:read:{secret}", token=secret))


def test_redaction_masks_each_kind_of_address() -> None:
    assert redact(
        {
            "email": "ana.lopez@example.com",
            "phone": "+33 6 12 34 56 89",
            "push_token": "ExponentPushToken[xxxxxxxxxxxxxxxxxxxxxx]",
            "to": "device-42",
            "reason": "DeviceNotRegistered: ExponentPushToken[abc] (+14155550123)",
            "history": [{"address": "+14155550123"}, {"address": None}],
            "journey_id": "welcome",
        }
    ) == {
        "email": "a***@example.com",
        "phone": "+33******89",
        "push_token": "ExponentPushToken[***]",
        "to": "d***",
        "reason": "DeviceNotRegistered: ExponentPushToken[***] (+14******23)",
        "history": [{"address": "+14******23"}, {"address": None}],
        "journey_id": "welcome",
    }


def test_every_route_has_a_scope_and_the_readme_lists_it() -> None:
    app = Api(Settings(), ApiSettings(token="t", port=0)).app()
    served = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    assert served == set(ROUTE_SCOPES)
    section = ROOT.joinpath("README.md").read_text().split("\n### HTTP API")[1]
    section = section.split("\n### ")[0]
    listed: dict[tuple[str, str], str] = {}
    for line in section.splitlines():
        if line.startswith("|") and not line.startswith("| ---"):
            columns = line.split("|")
            for method, path in re.findall(r"`(GET|POST) (/[^`\s]*)`", columns[1]):
                listed[(method, re.sub(r"\{[^}]*\}", "{}", path))] = columns[2].strip(" `")
    wanted = {
        (method, re.sub(r"\{[^}]*\}", "{}", path)): scope
        for (method, path), scope in ROUTE_SCOPES.items()
    }
    assert listed == wanted
    assert PUBLIC in listed.values()
