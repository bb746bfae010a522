"""Who may call the API: bearer tokens with scopes, read from API_TOKENS (and the older single
API_TOKEN), checked in constant time.

`API_TOKENS` is `name:scopes:secret` entries separated by `;`, scopes separated by `,`: e.g.
`grafana:read:Xb3...;ci:write:Qm9...;ops:admin,pii:Zt7...`. The scopes are `read` < `write` <
`admin` (each implies the ones before) and `pii`, which lets the token see users' email
addresses, phone numbers and push tokens (redacted otherwise). Several tokens may share scopes,
so a token is rotated by adding the new one, moving its clients, then removing the old one.
`API_TOKEN`, when set, is one more token named `API_TOKEN` with `admin,pii`: what it could do
before scopes existed.

Only a SHA-256 digest of each secret is kept, and every configured digest is compared (with
`hmac.compare_digest`) on each request, so neither the time taken nor an early exit tells which
token, or how much of one, matched."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from app.field_error import FieldError

READ, WRITE, ADMIN, PII = "read", "write", "admin", "pii"
# Each access scope with the ones it implies.
LEVELS = (READ, WRITE, ADMIN)
SCHEME = "bearer"
LEGACY_NAME = "API_TOKEN"


class TokenConfigError(FieldError):
    """A bad API_TOKENS entry: where (the entry's number and name, never its secret) and what
    was expected. The API refuses to start on one rather than run with fewer tokens."""


@dataclass(frozen=True)
class ApiToken:
    name: str
    level: str
    pii: bool
    digest: bytes = field(repr=False)

    def allows(self, scope: str) -> bool:
        return LEVELS.index(self.level) >= LEVELS.index(scope)

    def scopes(self) -> str:
        return ",".join(LEVELS[: LEVELS.index(self.level) + 1] + ((PII,) if self.pii else ()))


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def _entry(number: int, text: str) -> ApiToken:
    name, _, rest = text.strip().partition(":")
    scopes_text, _, secret = rest.partition(":")
    where = f"API_TOKENS entry {number}" + (f" ({name})" if name else "")
    if not name or not secret:
        raise TokenConfigError(where, "name:scopes:secret, e.g. grafana:read:<secret>")
    scopes = {scope.strip() for scope in scopes_text.split(",")}
    unknown = scopes - {*LEVELS, PII}
    if unknown:
        raise TokenConfigError(
            f"{where} scopes", f"read, write, admin and pii, not {', '.join(sorted(unknown))}"
        )
    levels = [level for level in LEVELS if level in scopes]
    if not levels:
        raise TokenConfigError(f"{where} scopes", "one of read, write or admin besides pii")
    if len(secret) < 16 or secret != secret.strip() or " " in secret:
        raise TokenConfigError(f"{where} secret", "16 or more characters, no spaces")
    return ApiToken(name, levels[-1], PII in scopes, _digest(secret))


def parse_tokens(tokens: str, legacy: str) -> tuple[ApiToken, ...]:
    """The tokens of API_TOKENS, then API_TOKEN's (admin and pii) when set."""
    parsed = [_entry(n, text) for n, text in enumerate(tokens.split(";"), 1) if text.strip()]
    if legacy:
        parsed.append(ApiToken(LEGACY_NAME, ADMIN, True, _digest(legacy)))
    names = [token.name for token in parsed]
    for token in parsed:
        if names.count(token.name) > 1:
            raise TokenConfigError(f"API_TOKENS name {token.name}", "a name used once")
    digests = [token.digest for token in parsed]
    for token in parsed:
        if digests.count(token.digest) > 1:
            raise TokenConfigError(f"API_TOKENS secret of {token.name}", "a secret used once")
    return tuple(parsed)


def credentials(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (the scheme in any case, RFC 7235),
    or None for anything else: no header, another scheme, a bare token."""
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip(" ")
    if scheme.lower() != SCHEME or not token or " " in token:
        return None
    return token


def authenticate(tokens: tuple[ApiToken, ...], authorization: str) -> ApiToken | None:
    """The configured token the header carries, or None. Every token is compared, whatever
    matched before."""
    given = credentials(authorization)
    digest = _digest(given if given is not None else "")
    found = None
    for token in tokens:
        if hmac.compare_digest(token.digest, digest) and given is not None:
            found = token
    return found
