"""Who must not be sent to, whatever a journey says: the `suppressions` collection holds addresses
per channel with the reason (a hard bounce, a spam complaint, an unsubscribe from the channel),
one document per channel and address; `topic_opt_outs` holds the users who unsubscribed from a
topic (product_updates, weekly_summary), one document per topic and user. The API's unsubscribe
endpoint writes here before it answers, and the sender reads both right before each delivery, so
an unsubscribe is honoured even for a send already buffered, queued or retrying."""

from __future__ import annotations

from datetime import datetime

from app.store.mongo import Database


def _address_key(channel: str, address: str) -> str:
    """Email addresses compare without case (as mailbox providers treat them); other channels'
    addresses (push tokens, phone numbers, URLs) as they are."""
    normal = address.strip().lower() if channel == "email" else address
    return f"{channel}:{normal}"


class SuppressionList:
    def __init__(self, database: Database) -> None:
        self.addresses = database["suppressions"]
        self.opt_outs = database["topic_opt_outs"]

    async def add(self, channel: str, address: str, reason: str, at: datetime) -> None:
        """Suppresses the address on the channel; a later reason replaces an earlier one."""
        await self.addresses.update_one(
            {"_id": _address_key(channel, address)},
            {"$set": {"channel": channel, "address": address, "reason": reason, "at": at}},
            upsert=True,
        )

    async def reasons(self, channel: str, addresses: list[str]) -> dict[str, str]:
        """The suppressed ones among `addresses` (as given), with their reason: one query."""
        keys = {_address_key(channel, address): address for address in addresses}
        if not keys:
            return {}
        cursor = self.addresses.find({"_id": {"$in": list(keys)}}, {"reason": 1})
        return {keys[document["_id"]]: document["reason"] async for document in cursor}

    async def opt_out(self, user_id: str, topic: str, at: datetime) -> None:
        """Records that the user unsubscribed from the topic (the first time is kept)."""
        await self.opt_outs.update_one(
            {"_id": f"{topic}:{user_id}"},  # topic names hold no ':', so the key is unambiguous
            {"$setOnInsert": {"topic": topic, "user_id": user_id, "at": at}},
            upsert=True,
        )

    async def opted_out(self, topic: str, user_ids: list[str]) -> set[str]:
        """The users among `user_ids` who unsubscribed from the topic: one query."""
        if not user_ids:
            return set()
        cursor = self.opt_outs.find({"_id": {"$in": [f"{topic}:{u}" for u in user_ids]}})
        return {document["user_id"] async for document in cursor}
