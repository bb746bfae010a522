"""Records the store would refuse are refused at the contract, by a real worker: attribute and
property keys with '.', a leading '$' or NUL, integers beyond 64 bits. Each goes to the
dead-letter topic with its path and rule and no personal data, the batch around it goes through
whole (never one record at a time), and an unknown user time zone is dead-lettered while its
event applies and the user keeps the last valid zone."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from app.store.mongo import close_client, new_client
from app.store.users import StoredUser, UserStore

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo-onboarding.yaml"


def signup(event_id: str, user: str, **extra: object) -> dict:
    at = datetime.now(UTC).isoformat()
    attributes = {"email": f"{user}@private.test", "first_name": user.title()}
    return {"event_id": event_id, "user_id": user, "name": "signed_up", "at": at,
            "attributes": attributes, **extra}  # fmt: skip


async def stored(pipeline, user: str, until_event: str) -> StoredUser:
    client = new_client(pipeline.settings)
    try:
        store = UserStore(client[pipeline.settings.mongo_db], pipeline.settings.mongo_bulk_ops)
        for _ in range(120):
            found = (await store.load_many([user]))[user]
            if until_event in found.state.events:
                return found
            await asyncio.sleep(0.5)
        raise AssertionError(f"{user} never applied {until_event}")
    finally:
        await close_client(client)


async def test_records_the_store_refuses_are_dead_lettered_at_the_contract(pipeline) -> None:
    await pipeline.deploy(DEMO)
    pipeline.start_worker()
    dotted = signup("k-1", "kim")
    dotted["attributes"]["prefs"] = {"news.letter": True}
    dollar = signup("d-1", "dan", properties={"$set": 1})
    nul = signup("n-1", "nia")
    nul["attributes"]["a\u0000b"] = 1
    huge = signup("i-1", "ivy", properties={"order": [1, 2**63]})
    zoned = signup("t-1", "tia", timezone="America/New_York")
    rezoned = {**signup("t-2", "tia", timezone="America/LosAngeles"), "name": "visited"}
    good = signup("g-1", "gus")
    producer = AIOKafkaProducer(bootstrap_servers=pipeline.settings.kafka_bootstrap)
    await producer.start()
    try:
        topic = pipeline.settings.topic("user-events")
        for record in (zoned, dotted, dollar, nul, huge, rezoned, good):
            await producer.send(topic, orjson.dumps(record), key=record["user_id"].encode())
        await producer.flush()
    finally:
        await producer.stop()

    letters = await pipeline.read("dead-letter", timeout=60, until=5)
    found = {(letter["where"], letter["reason"].split(": ", 1)[1]) for letter in letters}
    assert found == {
        ("/attributes/prefs/news.letter",
         "a key containing '.' (expected a key without '.' (the store reads '.' as a path))"),
        ("/properties/$set",
         "a key starting with '$' (expected a key not starting with '$' (the store reads it "
         "as an operator))"),
        ("/attributes/a\\u0000b", "a key containing NUL (expected a key without NUL characters)"),
        ("/properties/order/1",
         "an integer beyond 64 bits (expected an integer from -2^63 to 2^63-1 (the store keeps "
         "64-bit integers; send larger ones as strings))"),
        ("/timezone",
         "a time zone this machine does not know (the event was applied; the user keeps their "
         "last valid zone) (expected an IANA time zone)"),
    }  # fmt: skip
    assert not any("private.test" in letter["reason"] for letter in letters)

    tia = await stored(pipeline, "tia", "visited")
    assert tia.state.timezone == "America/New_York"
    sent = await pipeline.dispatched(timeout=60, until=2)
    assert sorted(r["user_id"] for r in sent if r["step_id"] == "welcome") == ["gus", "tia"]
    assert "one by one" not in pipeline.logs.read_text()
