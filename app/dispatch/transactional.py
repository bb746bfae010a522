"""Transactional sends: one message to one user now, asked for over the API, that goes the way a
journey's sends go (a dispatch record on `send`, then the sender's ledger, rate limits and
retries). The dispatch id comes from the caller's idempotency key alone, so however often a key
is asked for, the sender delivers it once."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from app.dispatch.record import DispatchRecord, DispatchStep, Recipient
from app.engine.engine import ADDRESS_ATTRIBUTE
from app.engine.loader import NAME
from app.field_error import FieldError

# Not a journey name (those are letters, digits, _ and -), so no journey's sends mix with these.
TRANSACTIONAL_JOURNEY = "(transactional)"
TRANSACTIONAL_VERSION = 1
FIELDS = ("user_id", "template", "channel", "idempotency_key", "data", "address", "locale")
TEXT_LIMITS = {"user_id": 128, "template": 64, "idempotency_key": 256, "locale": 35}


class SendRequestError(FieldError):
    """A request that cannot be sent."""


@dataclass(frozen=True)
class SendRequest:
    user_id: str
    template: str
    channel: str
    idempotency_key: str
    data: dict[str, Any] = field(default_factory=dict)
    address: str | None = None
    locale: str | None = None

    @classmethod
    def parse(cls, body: bytes) -> SendRequest:
        try:
            fields = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise SendRequestError("body", "a JSON object") from None
        if not isinstance(fields, dict):
            raise SendRequestError("body", "a JSON object")
        for name in fields:
            if name not in FIELDS:
                raise SendRequestError(name, f"no other fields than {', '.join(FIELDS)}")
        for name, limit in TEXT_LIMITS.items():
            value = fields.get(name)
            required = name != "locale"
            if (value is not None or required) and not (
                isinstance(value, str) and 1 <= len(value) <= limit
            ):
                need = "a string" if required else "a string, if given,"
                raise SendRequestError(name, f"{need} of 1 to {limit} characters")
        if not NAME.match(fields["template"]):
            raise SendRequestError("template", "a template name: letters, digits, _ and -")
        if fields.get("channel") not in ADDRESS_ATTRIBUTE:
            raise SendRequestError("channel", f"one of {', '.join(ADDRESS_ATTRIBUTE)}")
        if not isinstance(fields.get("data", {}), dict):
            raise SendRequestError("data", "an object of template variables")
        address = fields.get("address")
        if address is not None and not (isinstance(address, str) and 1 <= len(address) <= 2048):
            raise SendRequestError("address", "a string, if given, of 1 to 2048 characters")
        return cls(**fields)

    @property
    def dispatch_id(self) -> str:
        return hashlib.sha256(f"transactional|{self.idempotency_key}".encode()).hexdigest()[:32]

    @property
    def digest(self) -> str:
        """The same for the same request, to tell a repeat from another request with its key."""
        fields = {name: getattr(self, name) for name in FIELDS}
        return hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).hexdigest()

    def record(
        self, attributes: dict[str, Any], user_locale: str | None, send_at: datetime
    ) -> DispatchRecord:
        """The dispatch record: the request's address and locale, else the user's; the user's
        attributes as template variables, under the request's data."""
        attribute = ADDRESS_ATTRIBUTE[self.channel]
        address = self.address
        if address is None and attribute is not None:
            stored = attributes.get(attribute)
            if stored is None:
                raise SendRequestError(
                    "address", f"an address, as the user has no '{attribute}' attribute"
                )
            address = str(stored)
        recipient = Recipient(
            user_id=self.user_id,
            dispatch_id=self.dispatch_id,
            locale=self.locale or user_locale,
            variables=orjson.loads(orjson.dumps({**attributes, **self.data})),
            address=address,
        )
        step = DispatchStep(
            TRANSACTIONAL_JOURNEY,
            TRANSACTIONAL_VERSION,
            self.template,
            self.channel,
            self.template,
            transactional=True,  # asked for by the user's action: no unsubscribe link
        )
        return DispatchRecord(step, send_at, (recipient,))
