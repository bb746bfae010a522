"""Users' addresses as a token without the `pii` scope sees them: enough left to tell two apart
when you already know them (`a***@example.com`, `+33******89`, `ExponentPushToken[***]`), not
enough to write to them.

Fields named as addresses are masked whole, whatever they hold; in every other text, email
addresses, push tokens and international phone numbers are masked where they appear (a
provider's bounce reason often quotes the address)."""

from __future__ import annotations

import re
from typing import Any

# The fields of user views, timelines and deliveries that hold an address.
ADDRESS_FIELDS = frozenset(
    {"address", "to", "email", "phone", "phone_number", "push_token", "recipient"}
)
_EMAIL = re.compile(r"[^\s@<>\"'(),;:\[\]]+@([^\s@<>\"'(),;:\[\]]+\.[^\s@<>\"'(),;:\[\]]+)")
_PUSH = re.compile(r"(Expo(?:nent)?PushToken)\[[^\]]*\]")
_PHONE = re.compile(r"\+\d[\d ().-]{5,18}\d")


def mask_email(address: str) -> str:
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}***@{domain}"


def mask_phone(number: str) -> str:
    digits = "".join(c for c in number if c.isdigit())
    if len(digits) < 6:
        return "***"
    return f"{'+' if number.lstrip().startswith('+') else ''}{digits[:2]}******{digits[-2:]}"


def mask_address(address: str) -> str:
    """An address of any channel, by its shape: a push token, an email address, a phone number;
    anything else (a device id, a URL) keeps only its first character."""
    push = _PUSH.fullmatch(address)
    if push:
        return f"{push.group(1)}[***]"
    if "@" in address:
        return mask_email(address)
    if re.fullmatch(r"\+?[\d ().-]+", address):
        return mask_phone(address)
    return f"{address[:1]}***"


def scrub(text: str) -> str:
    """Free text with every email address, push token and international phone number masked."""
    text = _PUSH.sub(lambda m: f"{m.group(1)}[***]", text)
    text = _EMAIL.sub(lambda m: mask_email(m.group(0)), text)
    return _PHONE.sub(lambda m: mask_phone(m.group(0)), text)


def redact(value: Any) -> Any:
    """A JSON value (a timeline, a delivery) with its addresses masked."""
    if isinstance(value, dict):
        return {
            key: mask_address(item)
            if key in ADDRESS_FIELDS and isinstance(item, str)
            else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item) for item in value]
    if isinstance(value, str):
        return scrub(value)
    return value
