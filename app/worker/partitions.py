"""Which partition a user's records land on: the same murmur2 hash as Java's default partitioner.
The worker sets it explicitly on every record it produces to user-events-by-user and timers (no
client's partitioner decides), and the timer pump uses it to find the users of the partitions
this worker owns."""

from __future__ import annotations

from aiokafka.partitioner import murmur2


def partition_of(user_id: str, partitions: int) -> int:
    return (murmur2(user_id.encode()) & 0x7FFFFFFF) % partitions
