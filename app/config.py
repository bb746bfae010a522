"""Settings from the environment; every default points at the servers `scripts/services` starts."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


@dataclass(frozen=True)
class Settings:
    kafka_url: str = field(default_factory=lambda: _env("KAFKA_URL", "kafka://127.0.0.1:9092"))
    mongo_url: str = field(default_factory=lambda: _env("MONGO_URL", "mongodb://127.0.0.1:27017"))
    mongo_db: str = field(default_factory=lambda: _env("MONGO_DB", "journeys"))
    mongo_driver: str = field(default_factory=lambda: _env("MONGO_DRIVER", "motor"))
    redis_url: str = field(default_factory=lambda: _env("REDIS_URL", "redis://127.0.0.1:6380/0"))
    redis_prefix: str = field(default_factory=lambda: _env("REDIS_PREFIX", "journeys"))
    topic_prefix: str = field(default_factory=lambda: _env("TOPIC_PREFIX", ""))

    @property
    def kafka_bootstrap(self) -> str:
        """`host:port[,host:port]` for aiokafka, from a `kafka://` URL or a bare list."""
        return self.kafka_url.removeprefix("kafka://")

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"
