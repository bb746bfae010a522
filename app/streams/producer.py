"""One idempotent aiokafka producer per process, configured the same way everywhere."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from app.config import Settings

MAX_REQUEST_BYTES = 4 * 1024 * 1024


def new_producer(settings: Settings) -> AIOKafkaProducer:
    """acks=all with idempotence: a retried produce never duplicates a record in the log."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_request_size=MAX_REQUEST_BYTES,
    )
