"""Entry slots from Redis: the worker's answer to an engine asking whether a journey's entry
limits admit one more entry (the rule is `app.engine.entry_limits.admits`, the same the
simulator's ledger applies). One script per slot checks and counts atomically, so workers on
other partitions never admit past a limit between them.

Each answer is kept under its grant id for `ANSWER_TTL_SECONDS`: a replayed input (a crash
before its write, a conflict round) gets its first answer and spends no second slot. A minute's
count lives as long as an event may be late (`EVENT_MAX_PAST_SECONDS`, plus a day). The count
of entries ever is rebuilt from the `timeline` (its `entered` records) when Redis has lost it,
before the first slot after the loss is answered; entries still on their way through the
`timeline` topic (the projector's lag, normally under a second) are not in it, so the rebuilt
count can admit that many more. A per-minute count lost with Redis starts again from zero, which
can admit at most one more minute's worth."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from app.engine import EngineInput, JourneyEngine, Transition, UserState
from app.engine.entry_limits import EntrySlot
from app.keyspace import Keyspace
from app.redis_client import RedisClient
from app.store.mongo import Database
from app.store.timeline import Timeline

ANSWER_TTL_SECONDS = 2 * 86400
NO_LIMIT = -1
LOST = -1  # what the script answers when the count of entries ever is missing
# KEYS: answer, minute count, count ever. ARGV: per minute, total (-1: no limit), minute TTL,
# answer TTL. Answers 1 (granted), 0 (refused) or -1 (the count ever is gone: rebuild it).
TAKE_SLOT = """
local answer = redis.call('get', KEYS[1])
if answer then return tonumber(answer) end
local ever = redis.call('get', KEYS[3])
if not ever then return -1 end
local per_minute, total = tonumber(ARGV[1]), tonumber(ARGV[2])
local in_minute = tonumber(redis.call('get', KEYS[2]) or '0')
local granted = 0
if (per_minute < 0 or in_minute < per_minute) and (total < 0 or tonumber(ever) < total) then
  granted = 1
  redis.call('incr', KEYS[2])
  redis.call('expire', KEYS[2], ARGV[3])
  redis.call('incr', KEYS[3])
end
redis.call('set', KEYS[1], granted, 'EX', ARGV[4])
return granted
"""


class EntrySlots:
    def __init__(
        self, client: RedisClient, prefix: str, database: Database, minute_ttl_seconds: int
    ) -> None:
        self._redis = client
        self._keys = Keyspace(prefix)
        self._timeline = Timeline(database)
        self._minute_ttl = minute_ttl_seconds
        self._take = client.register_script(TAKE_SLOT)

    async def apply(
        self, engine: JourneyEngine, state: UserState, item: EngineInput, now: datetime
    ) -> Transition:
        """The engine's transition for the input, with every entry slot it asks for answered."""
        transition = engine.apply(state, item, now)
        answers: dict[str, bool] = {}
        while transition.asks:
            answers |= await self.grant(engine, transition.asks)
            transition = engine.apply(state, item, now, answers)
        return transition

    async def grant(
        self, engine: JourneyEngine, slots: tuple[EntrySlot, ...]
    ) -> Mapping[str, bool]:
        """An answer for each slot, in order, from Redis."""
        answers: dict[str, bool] = {}
        for slot in slots:
            answer = await self._take_slot(slot)
            if answer == LOST:
                await self._rebuild_count(engine, slot.journey_id)
                answer = await self._take_slot(slot)
            answers[slot.grant_id] = answer == 1
        return answers

    async def _take_slot(self, slot: EntrySlot) -> int:
        limits = slot.limits
        return int(
            await self._take(
                keys=[
                    self._keys.entry_answer(slot.journey_id, slot.grant_id),
                    self._keys.entries_in_minute(slot.journey_id, slot.minute),
                    self._keys.entries_ever(slot.journey_id),
                ],
                args=[
                    NO_LIMIT if limits.per_minute is None else limits.per_minute,
                    NO_LIMIT if limits.total is None else limits.total,
                    self._minute_ttl,
                    ANSWER_TTL_SECONDS,
                ],
            )
        )

    async def _rebuild_count(self, engine: JourneyEngine, journey_id: str) -> None:
        """The count of entries ever, from the timeline's entries into the journey's versions
        with entry limits (the ones that asked for slots); the first worker to set it wins."""
        limited = [
            version
            for (other, version), journey in engine.versions.items()
            if other == journey_id and journey.entry_limits is not None
        ]
        entered = await self._timeline.entries_into(journey_id, limited)
        await self._redis.set(self._keys.entries_ever(journey_id), entered, nx=True)
