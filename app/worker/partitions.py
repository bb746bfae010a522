"""Which partition a user's records land on: the same murmur2 hash as Kafka's default
partitioner, so the timer pump can find the users of the partitions this worker owns."""

from __future__ import annotations

from aiokafka.partitioner import murmur2


def partition_of(user_id: str, partitions: int) -> int:
    return (murmur2(user_id.encode()) & 0x7FFFFFFF) % partitions
