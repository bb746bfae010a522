"""Every setting the app reads from the environment, and the only module that reads it.

`Settings` is shared by every process (the servers, names and stores); `WorkerSettings`,
`SenderSettings` and `ApiSettings` hold what only the worker, the sender or the API uses. Each
field reads its variable when its section is built, not at import, and a keyword argument (as tests
pass) takes its place. The defaults point at the servers `scripts/services` starts and suit one
machine. Adding a setting is one line, a field whose default is `env("VARIABLE", default)`, plus its
row in the README's configuration table (tests/test_config.py checks the two agree).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[1]

T = TypeVar("T", str, int, float, Path)


def env(name: str, default: T, secret: bool = False) -> T:
    """A dataclass field read from the variable `name`, parsed as the default's type (so a float
    setting needs a float default); an unset variable gives the default. A `secret` is left out
    of the section's repr, so printing settings never shows it."""

    def read() -> T:
        value = os.environ.get(name)
        return default if value is None else type(default)(value)

    return field(default_factory=read, repr=not secret)


@dataclass(frozen=True)
class Settings:
    kafka_url: str = env("KAFKA_URL", "kafka://127.0.0.1:9092")
    kafka_replication_factor: int = env("KAFKA_REPLICATION_FACTOR", 1)
    topic_prefix: str = env("TOPIC_PREFIX", "")
    # Empty: the repo's `topics/` (installed images set it, as the package has no topics).
    topics_dir: str = env("JOURNEYS_TOPICS_DIR", "")
    mongo_url: str = env("MONGO_URL", "mongodb://127.0.0.1:27017")
    mongo_db: str = env("MONGO_DB", "journeys")
    mongo_driver: str = env("MONGO_DRIVER", "motor")
    mongo_bulk_ops: int = env("MONGO_BULK_OPS", 50)
    redis_url: str = env("REDIS_URL", "redis://127.0.0.1:6380/0")
    redis_prefix: str = env("REDIS_PREFIX", "journeys")
    # One-click unsubscribe: the API's public base URL (the sender writes links to it; RFC 8058
    # wants https in production), the key of the tokens and how long a link works.
    public_url: str = env("PUBLIC_URL", "http://127.0.0.1:8080")
    unsubscribe_secret: str = env("UNSUBSCRIBE_SECRET", "change-me")
    unsubscribe_days: int = env("UNSUBSCRIBE_TOKEN_DAYS", 90)

    @property
    def kafka_bootstrap(self) -> str:
        """`host:port[,host:port]` for aiokafka, from a `kafka://` URL or a bare list."""
        return self.kafka_url.removeprefix("kafka://")

    @property
    def contracts_dir(self) -> Path:
        return Path(self.topics_dir) if self.topics_dir else REPO / "topics"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


@dataclass(frozen=True)
class WorkerSettings:
    app_id: str = env("WORKER_APP_ID", "journeys-worker")
    # Micro-batches: up to this many inputs, or what arrived within this many seconds.
    batch_size: int = env("WORKER_BATCH_SIZE", 500)
    batch_within: float = env("WORKER_BATCH_WITHIN", 0.2)
    max_record_bytes: int = env("MAX_RECORD_BYTES", 256 * 1024)
    # The timeline projector's batches: larger, as an insert's cost is mostly per command.
    timeline_batch_size: int = env("TIMELINE_BATCH_SIZE", 2000)
    timeline_batch_within: float = env("TIMELINE_BATCH_WITHIN", 0.5)
    # The documents of recently seen users kept in memory, so a batch writes without reading
    # (app/worker/user_cache.py); 0 disables it.
    user_cache_bytes: int = env("WORKER_USER_CACHE_BYTES", 64 * 1024 * 1024)
    send_batch_size: int = env("SEND_BATCH_SIZE", 200)
    send_bucket_seconds: int = env("SEND_BUCKET_SECONDS", 1)
    # A record of fewer than send_batch_size leaves once the flow paused this long, or at the
    # latest after the max wait.
    send_hold_seconds: float = env("SEND_HOLD_SECONDS", 1.0)
    send_max_wait_seconds: float = env("SEND_MAX_WAIT_SECONDS", 5.0)
    batcher_interval: float = env("BATCHER_INTERVAL", 0.2)
    timer_pump_interval: float = env("TIMER_PUMP_INTERVAL", 0.2)
    timer_lease_seconds: float = env("TIMER_LEASE_SECONDS", 30.0)
    # The MongoDB scan behind the Redis due index: a collection scan on FerretDB, so not often.
    timer_sweep_interval: float = env("TIMER_SWEEP_INTERVAL", 3600.0)
    journeys_poll_interval: float = env("JOURNEYS_POLL_INTERVAL", 2.0)
    scheduler_interval: float = env("SCHEDULER_INTERVAL", 15.0)
    # Event times believed, around the record's receipt (see app.engine.inputs.EventTimePolicy).
    event_max_past_seconds: float = env("EVENT_MAX_PAST_SECONDS", 7 * 24 * 3600.0)
    event_max_future_seconds: float = env("EVENT_MAX_FUTURE_SECONDS", 300.0)
    # No shorter than an entry can live: a lock that expires early could admit a second branch.
    branch_lock_ttl_seconds: int = env("BRANCH_LOCK_TTL_SECONDS", 90 * 24 * 3600)
    web_port: int = env("WORKER_WEB_PORT", 0)
    # Faust's data directory ({conf.name}: the app id). Journeys keeps no Faust tables; outside
    # the working directory so runs leave nothing behind in a checkout.
    data_dir: str = env("WORKER_DATA_DIR", str(Path(tempfile.gettempdir()) / "{conf.name}-data"))
    # A crashed member's partitions move once the group misses its heartbeats this long (Kafka's
    # group.min.session.timeout.ms, 6 s by default, is the floor).
    session_timeout_seconds: float = env("WORKER_SESSION_TIMEOUT", 10.0)
    heartbeat_interval_seconds: float = env("WORKER_HEARTBEAT_INTERVAL", 1.0)


@dataclass(frozen=True)
class SenderSettings:
    group_id: str = env("SENDER_GROUP_ID", "journeys-sender")
    concurrency: int = env("SENDER_CONCURRENCY", 20)
    timeout_seconds: float = env("SENDER_TIMEOUT", 10.0)
    max_attempts: int = env("SENDER_MAX_ATTEMPTS", 6)
    session_timeout_seconds: float = env("SENDER_SESSION_TIMEOUT", 10.0)
    heartbeat_interval_seconds: float = env("SENDER_HEARTBEAT_INTERVAL", 1.0)
    templates_dir: Path = env("TEMPLATES_DIR", REPO / "templates")
    default_locale: str = env("DEFAULT_LOCALE", "en")
    email_url: str = env("EMAIL_API_URL", "")
    email_token: str = env("EMAIL_API_TOKEN", "")
    email_from: str = env("EMAIL_FROM", "journeys@example.com")
    push_url: str = env("PUSH_API_URL", "")
    push_token: str = env("PUSH_API_TOKEN", "")
    webhook_url: str = env("WEBHOOK_URL", "")
    webhook_secret: str = env("WEBHOOK_SECRET", "change-me")
    # SMS in Twilio's format: the API's base URL (https://api.twilio.com), account and sender.
    sms_url: str = env("SMS_API_URL", "")
    sms_account_sid: str = env("SMS_ACCOUNT_SID", "AC-local")
    sms_auth_token: str = env("SMS_AUTH_TOKEN", "change-me")
    sms_from: str = env("SMS_FROM", "+15005550006")
    sms_status_callback: str = env("SMS_STATUS_CALLBACK_URL", "")
    # Expo's receipts endpoint (https://exp.host/--/api/v2/push/getReceipts); empty: not polled.
    push_receipts_url: str = env("PUSH_RECEIPTS_URL", "")
    push_receipts_interval: float = env("PUSH_RECEIPTS_INTERVAL", 60.0)
    # Sends per second per channel, shared by every sender instance (token bucket in Redis); a
    # channel's own rate, when above 0, takes the place of SENDER_RATE for it.
    rate_per_second: float = env("SENDER_RATE", 200.0)
    email_rate: float = env("SENDER_RATE_EMAIL", 0.0)
    push_rate: float = env("SENDER_RATE_PUSH", 0.0)
    sms_rate: float = env("SENDER_RATE_SMS", 0.0)
    webhook_rate: float = env("SENDER_RATE_WEBHOOK", 0.0)
    # Dispatch records handled at once per sender, so a slow channel's records leave room for
    # the others'.
    records_in_flight: int = env("SENDER_RECORDS_IN_FLIGHT", 40)
    breaker_failures: int = env("BREAKER_FAILURES", 5)
    breaker_cooldown: float = env("BREAKER_COOLDOWN", 30.0)

    def channel_rates(self) -> dict[str, float]:
        """Sends per second of each channel: its own rate, or SENDER_RATE where it has none."""
        own = {
            "email": self.email_rate,
            "push": self.push_rate,
            "sms": self.sms_rate,
            "webhook": self.webhook_rate,
        }
        return {
            channel: rate if rate > 0 else self.rate_per_second for channel, rate in own.items()
        }


@dataclass(frozen=True)
class ApiSettings:
    # Bearer tokens, `name:scopes:secret` separated by `;` (app/api/auth.py); API_TOKEN, the
    # single token of before, is one more with admin and pii.
    tokens: str = env("API_TOKENS", "", secret=True)
    token: str = env("API_TOKEN", "", secret=True)
    port: int = env("API_PORT", 8080)
    max_body_bytes: int = env("API_MAX_BODY_BYTES", 256 * 1024)
    # Provider callbacks: SendGrid's verification key (base64 DER), the generic format's secret,
    # and how far a callback's signed time may be from the API's clock.
    sendgrid_public_key: str = env("SENDGRID_WEBHOOK_PUBLIC_KEY", "")
    callback_secret: str = env("CALLBACK_SECRET", "change-me")
    callback_tolerance_seconds: float = env("CALLBACK_TOLERANCE_SECONDS", 600.0)
