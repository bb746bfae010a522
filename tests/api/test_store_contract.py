"""POST /events refuses what the store would refuse, with the path and the rule and without
quoting the value: keys with '.', a leading '$' or NUL at any depth of attributes and
properties, event names the store keeps as keys, integers beyond 64 bits."""

from __future__ import annotations

import orjson
import pytest

from tests.api.test_api import AUTH, api_client, stack  # noqa: F401 (stack is a fixture)

EVENT = {"event_id": "e-1", "user_id": "u-1", "name": "signed_up", "at": "2026-11-02T09:00:00Z"}


@pytest.mark.parametrize(
    ("extra", "where", "found"),
    [
        ({"attributes": {"prefs": [{"news.letter": True}]}}, "/attributes/prefs/0/news.letter",
         "a key containing '.'"),
        ({"properties": {"$where": "1"}}, "/properties/$where", "a key starting with '$'"),
        ({"attributes": {"a\u0000": 1}}, "/attributes/a\\u0000", "a key containing NUL"),
        ({"properties": {"phone": 18446744073709551615}}, "/properties/phone",
         "an integer beyond 64 bits"),
        ({"name": "cart.added"}, "/name", "a key containing '.'"),
    ],
)  # fmt: skip
async def test_records_the_store_refuses_get_400_with_the_path(
    stack,  # noqa: F811
    extra: dict,
    where: str,
    found: str,
) -> None:
    client = await api_client(stack)
    try:
        response = await client.post("/events", data=orjson.dumps({**EVENT, **extra}), headers=AUTH)
        body = await response.json()
        assert response.status == 400
        assert body["where"] == where
        assert body["error"].startswith(f"user-events record at {where}: {found} (expected ")
        assert "18446744073709551615" not in body["error"]
        fine = {"attributes": {"a_b": 2**63 - 1, "s": "a.b$\u0000", "n": {"x-y": -(2**63)}}}
        accepted = await client.post("/events", data=orjson.dumps({**EVENT, **fine}), headers=AUTH)
        assert accepted.status == 202
    finally:
        await client.close()
