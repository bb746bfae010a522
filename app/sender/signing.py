"""The webhook signature, after Stripe's scheme: `X-Journeys-Signature: t=<unix seconds>,
v1=<hex HMAC-SHA256 of "<t>.<raw body>">` keyed with WEBHOOK_SECRET. The time is inside the
signed text, so a receiver can refuse a replayed request as well as a forged one."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Journeys-Signature"
TOLERANCE_SECONDS = 300


def sign(secret: str, timestamp: int, payload: bytes) -> str:
    """The header's value for `payload` sent at `timestamp`."""
    return f"t={timestamp},v1={_digest(secret, timestamp, payload)}"


def verify(
    secret: str, header: str, payload: bytes, now: float, tolerance: float = TOLERANCE_SECONDS
) -> bool:
    """Whether `header` signs `payload` with `secret` within `tolerance` seconds of `now`."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields.get("t", ""))
    except ValueError:
        return False
    if abs(now - timestamp) > tolerance:
        return False
    return hmac.compare_digest(fields.get("v1", ""), _digest(secret, timestamp, payload))


def _digest(secret: str, timestamp: int, payload: bytes) -> str:
    signed = f"{timestamp}.".encode() + payload
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
