"""The sender's settings, from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


@dataclass(frozen=True)
class SenderSettings:
    group_id: str = field(default_factory=lambda: _env("SENDER_GROUP_ID", "journeys-sender"))
    concurrency: int = field(default_factory=lambda: int(_env("SENDER_CONCURRENCY", "20")))
    timeout_seconds: float = field(default_factory=lambda: float(_env("SENDER_TIMEOUT", "10")))
    max_attempts: int = field(default_factory=lambda: int(_env("SENDER_MAX_ATTEMPTS", "6")))
    templates_dir: Path = field(
        default_factory=lambda: Path(
            _env("TEMPLATES_DIR", str(Path(__file__).resolve().parents[2] / "templates"))
        )
    )
    default_locale: str = field(default_factory=lambda: _env("DEFAULT_LOCALE", "en"))
    email_url: str = field(default_factory=lambda: _env("EMAIL_API_URL"))
    email_token: str = field(default_factory=lambda: _env("EMAIL_API_TOKEN"))
    email_from: str = field(default_factory=lambda: _env("EMAIL_FROM", "journeys@example.com"))
    push_url: str = field(default_factory=lambda: _env("PUSH_API_URL"))
    push_token: str = field(default_factory=lambda: _env("PUSH_API_TOKEN"))
    webhook_url: str = field(default_factory=lambda: _env("WEBHOOK_URL"))
    webhook_secret: str = field(default_factory=lambda: _env("WEBHOOK_SECRET", "change-me"))
    sms_url: str = field(default_factory=lambda: _env("SMS_API_URL"))
    # Sends per second per channel, shared by every sender instance (token bucket in Redis).
    rate_per_second: float = field(default_factory=lambda: float(_env("SENDER_RATE", "200")))
    breaker_failures: int = field(default_factory=lambda: int(_env("BREAKER_FAILURES", "5")))
    breaker_cooldown: float = field(default_factory=lambda: float(_env("BREAKER_COOLDOWN", "30")))
