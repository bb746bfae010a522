"""Every Redis key Journeys uses, built in one place from the installation's prefix.

A part in braces is a Redis Cluster hash tag: only it is hashed, so keys with the same tag share a
slot. A user's keys are tagged by user id, a send buffer's by its message step, a due index by its
partition; keys of different users never need to meet in one command. The index of every send
buffer and the workers' metrics are split in shards, each tagged, so no one slot (no one master of
a cluster) carries them all: writers pick a shard by a hash, readers read every shard."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import datetime

from app.dispatch.record import DispatchStep

# Changing a count strands what older processes wrote under the old shards: fixed, not settings.
SEND_BUFFER_INDEX_SHARDS = 16
WORKER_METRICS_SHARDS = 4


def hash_tag(*parts: object) -> str:
    return "{" + ":".join(map(str, parts)) + "}"


def shard_of(text: str, shards: int) -> int:
    """A stable shard number (CRC32, the same in every process and release)."""
    return zlib.crc32(text.encode()) % shards


@dataclass(frozen=True)
class Keyspace:
    prefix: str

    def branch_lock(self, user_id: str, lock_name: str) -> str:
        """The branch that won a user's entry (`lock_name` is "<journey>:<user>:<entry>")."""
        return f"{self.prefix}:branch:{hash_tag(user_id)}:{lock_name}"

    def emitted_mark(self, user_id: str) -> str:
        """The digest of a user's last emitted outbox."""
        return f"{self.prefix}:emitted:{hash_tag(user_id)}"

    def send_buffer_index(self, shard: int) -> str:
        """The headers of the send buffers of the steps in one shard, scored by bucket time."""
        return f"{self.prefix}:send-buffers:{hash_tag(f'sb{shard}')}"

    def send_buffer_indexes(self) -> list[str]:
        return [self.send_buffer_index(shard) for shard in range(SEND_BUFFER_INDEX_SHARDS)]

    def send_buffer_index_of(self, step: DispatchStep) -> str:
        """The index shard of a step's buffers: every bucket of a step in the same one."""
        return self.send_buffer_index(shard_of(self._step(step), SEND_BUFFER_INDEX_SHARDS))

    def send_buffer(self, step: DispatchStep, bucket: datetime) -> str:
        """The recipients of one step due in one send-time bucket."""
        return f"{self._step(step)}:{int(bucket.timestamp())}"

    def send_buffer_lease(self, step: DispatchStep) -> str:
        """Held by the batcher draining a step's buffers."""
        return f"{self._step(step)}:lease"

    def _step(self, step: DispatchStep) -> str:
        tag = hash_tag(step.journey_id, step.journey_version, step.step_id)
        return f"{self.prefix}:send-buffer:{tag}"

    def due_index(self, partition: int) -> str:
        """The users of one partition with a timer, scored by their next due time."""
        return f"{self.prefix}:due:{hash_tag(f'p{partition}')}"

    def epoch(self) -> str:
        """Set once per Redis lifetime: its absence says Redis lost its data."""
        return f"{self.prefix}:epoch"

    def cluster_epoch(self, tag: str) -> str:
        """The epoch key of one cluster master: `tag` is chosen to hash to one of its slots."""
        return f"{self.prefix}:epoch:{hash_tag(tag)}"

    def delivery_claim(self, dispatch_id: str) -> str:
        """The sender delivering one dispatch id."""
        return f"{self.prefix}:delivery:{hash_tag(dispatch_id)}"

    def transactional_send(self, dispatch_id: str) -> str:
        """The first request of one transactional send's idempotency key: its digest and time."""
        return f"{self.prefix}:transactional:{hash_tag(dispatch_id)}"

    def rate_limiter(self, channel: str) -> str:
        """The token bucket of one channel, shared by every sender."""
        return f"{self.prefix}:ratelimit:{hash_tag(channel)}"

    def entry_answer(self, journey_id: str, grant_id: str) -> str:
        """The answer given to one entry slot (1 granted, 0 refused), kept for replays."""
        return f"{self.prefix}:entry-slot:{hash_tag(journey_id)}:{grant_id}"

    def entries_in_minute(self, journey_id: str, minute: datetime) -> str:
        """Entries granted into a journey with entry limits in one minute."""
        return f"{self.prefix}:entries:{hash_tag(journey_id)}:{int(minute.timestamp())}"

    def entries_ever(self, journey_id: str) -> str:
        """Entries granted into a journey with entry limits, ever."""
        return f"{self.prefix}:entries:{hash_tag(journey_id)}:total"

    def worker_metrics(self, worker_id: str) -> str:
        """A hash of one shard of the workers: worker id -> its latest metrics snapshot."""
        return self._worker_metrics(shard_of(worker_id, WORKER_METRICS_SHARDS))

    def worker_metrics_shards(self) -> list[str]:
        return [self._worker_metrics(shard) for shard in range(WORKER_METRICS_SHARDS)]

    def _worker_metrics(self, shard: int) -> str:
        return f"{self.prefix}:worker-metrics:{hash_tag(f'wm{shard}')}"

    def sender_metrics(self) -> str:
        """A hash: sender id -> its latest metrics snapshot (senders are few: one hash)."""
        return f"{self.prefix}:sender-metrics:{hash_tag('sm')}"

    def callback_event(self, event_id: str) -> str:
        """Set once a provider's report (by its user event id) is published on user-events."""
        return f"{self.prefix}:callback:{hash_tag(event_id)}"
