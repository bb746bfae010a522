"""Expo push receipts, polled: the push channel's tickets wait in `push_tickets`; every
PUSH_RECEIPTS_INTERVAL seconds the sender asks Expo's receipts endpoint for them (at most 1000 ids
a request, as Expo takes) and hands each receipt to `DeliveryEvents.handle` (delivered, or bounced:
`DeviceNotRegistered` hard, another error soft). A ticket whose receipt is read is removed; one
without a receipt after a day is dropped (Expo keeps receipts about a day)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import aiohttp

from app.callbacks.handler import DeliveryEvents
from app.callbacks.providers import parse_expo_receipts
from app.sender.channels import post_json
from app.store.deliveries import PushTickets

log = logging.getLogger(__name__)

IDS_PER_REQUEST = 1000
RECEIPTS_KEPT = timedelta(days=1)


class ReceiptPoller:
    def __init__(
        self,
        url: str,
        token: str,
        tickets: PushTickets,
        events: DeliveryEvents,
    ) -> None:
        self._url = url
        self._token = token
        self._tickets = tickets
        self._events = events

    async def run(self, session: aiohttp.ClientSession, interval: float) -> None:
        """Polls until cancelled; a failed round (Expo or a store unreachable) is logged and
        tried again at the next one."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.poll(session, datetime.now(UTC))
            except Exception as error:  # a failed round, whatever failed, waits for the next one
                log.warning("reading Expo push receipts failed: %s", error)

    async def poll(self, session: aiohttp.ClientSession, now: datetime) -> int:
        """One round over the tickets waiting; the number of receipts handled."""
        pending = await self._tickets.pending(IDS_PER_REQUEST)
        if not pending:
            return 0
        answer = await post_json(
            session,
            self._url,
            {"ids": sorted(pending)},
            {"Authorization": f"Bearer {self._token}"},
        )
        dispatches = {ticket_id: doc["dispatch_id"] for ticket_id, doc in pending.items()}
        events = parse_expo_receipts(answer, dispatches, now)
        for event in events:
            await self._events.handle(event)
        stale = [
            ticket_id
            for ticket_id, doc in pending.items()
            if doc["at"].replace(tzinfo=UTC) < now - RECEIPTS_KEPT
        ]
        await self._tickets.remove([e.provider_event_id for e in events] + stale)
        return len(events)
