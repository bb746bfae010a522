"""The idempotency ledger: what has been delivered, by dispatch id. A Redis claim (`SET NX`) is
taken before sending and a `deliveries` document (unique by dispatch id) records the outcome.

A redelivered dispatch record finds the outcome and sends nothing. A sender that crashed between
the send and the record left a claim but no outcome: the next one sends again with the same
`Idempotency-Key`, which the provider recognises, so the user still gets one message.

The journey figures count each outcome the ledger records new (sent, failed, suppressed at
send, at its step and hour), so "sent" is what the sender sent, not what the worker buffered.
A redelivered record finds its outcome stored and counts nothing; a crash or a store error
between the ledger write and the count loses that one count (the retry finds the outcome stored)."""

from __future__ import annotations

from datetime import UTC, datetime

from app.engine.figures import send_outcome_figures
from app.keyspace import Keyspace
from app.redis_client import RedisClient
from app.store.deliveries import Deliveries, Outcome
from app.store.figures import FigureCounter, JourneyFigures
from app.store.mongo import Database

CLAIM_SECONDS = 3600


class DeliveryLedger:
    def __init__(self, client: RedisClient, database: Database, prefix: str) -> None:
        self._redis = client
        self.deliveries = Deliveries(database)
        self._keys = Keyspace(prefix)
        self.figures = FigureCounter(JourneyFigures(database), "sender")

    async def recorded(self, dispatch_ids: list[str]) -> dict[str, str]:
        """Dispatch ids that already have an outcome, with it."""
        return await self.deliveries.outcomes(dispatch_ids)

    async def claim(self, dispatch_id: str, owner: str) -> bool:
        """True if this sender took the claim; False if another one holds it (or crashed)."""
        return bool(
            await self._redis.set(
                self._keys.delivery_claim(dispatch_id), owner, nx=True, ex=CLAIM_SECONDS
            )
        )

    async def record(self, outcome: Outcome) -> bool:
        """Stores the outcome and counts it; False if one was already stored (a concurrent or
        earlier sender), which counts nothing. Outcomes of no journey version (documents from
        before versions were recorded) are not counted."""
        if not await self.deliveries.record(outcome):
            return False
        if outcome.journey_version is not None:
            await self.figures.count(
                outcome.journey_id,
                outcome.journey_version,
                outcome.step_id,
                datetime.now(UTC),
                send_outcome_figures(outcome.outcome, outcome.reason),
            )
        return True
