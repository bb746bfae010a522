"""A journey's figures through the API and the CLI: the flow page, conversions and the export
(CSV and JSON) for a date range, read from the kept counts; "sent" counting what the sender
recorded as sent (a failed send is not sent, a redelivered outcome counts once), and each
provider report counted once however often the provider retries it."""

from __future__ import annotations

import asyncio
import csv
import io
import time

import orjson
from click.testing import CliRunner

from app.cli import main
from app.redis_client import new_redis
from app.sender import signing
from app.sender.ledger import DeliveryLedger
from app.store.deliveries import Outcome
from app.store.mongo import close_client, new_client
from tests.api.test_api import AUTH, api_client, fill_timeline, stack  # noqa: F401  (the fixture)
from tests.api.test_callbacks import CALLBACK_API_TOKEN, SECRET, callback_api, record_send

JOURNEY = "demo-onboarding"
NINE = "2026-11-02T09:00:00Z"  # when ada signed up (fill_timeline)


async def record_outcomes(settings, outcomes: list[tuple[str, str, str | None]]) -> None:
    """(dispatch id, outcome, reason) recorded by the sender's ledger at the welcome step."""
    client, redis = new_client(settings), new_redis(settings)
    ledger = DeliveryLedger(redis, client[settings.mongo_db], settings.redis_prefix)
    for dispatch, outcome, reason in outcomes:
        await ledger.record(
            Outcome(
                dispatch_id=dispatch,
                outcome=outcome,
                user_id="bo",
                journey_id=JOURNEY,
                journey_version=1,
                step_id="welcome",
                channel="email",
                template_id="welcome",
                locale="en",
                attempts=1,
                reason=reason,
            )
        )
    await redis.aclose()
    await close_client(client)


def welcome_figures(rows: list[dict]) -> dict[str, int]:
    found: dict[str, int] = {}
    for row in rows:
        if row["step"] == "welcome":
            found[row["figure"]] = found.get(row["figure"], 0) + row["count"]
    return found


async def test_figures_for_a_range_as_json_csv_and_on_the_flow_page(stack) -> None:  # noqa: F811
    await fill_timeline(stack)  # ada enters at 9:00 and her welcome is recorded sent (now)
    await record_outcomes(
        stack,
        [("d-bo", "failed", "gave up after 3 attempts: 503"), ("d-bo", "sent", None),
         ("d-cy", "suppressed", "hard bounce")],
    )  # fmt: skip
    client = await api_client(stack)
    try:
        everything = await (await client.get(f"/journeys/{JOURNEY}/figures", headers=AUTH)).json()
        assert everything["since"] is None and everything["until"] is None
        assert welcome_figures(everything["figures"]) == {
            "sent": 1,
            "failed": 1,
            "suppressed at send": 1,
            "suppressed at send:hard bounce": 1,
        }
        nine = f"/journeys/{JOURNEY}/figures?since={NINE}&until=2026-11-02T10:00Z&format=csv"
        answer = await client.get(nine, headers=AUTH)
        assert answer.content_type == "text/csv"
        rows = list(csv.DictReader(io.StringIO(await answer.text())))
        assert {(r["version"], r["step"], r["figure"], r["hour"], r["count"]) for r in rows} == {
            ("1", "-", "entered", "2026-11-02T09:00:00Z", "1")
        }
        page = await (await client.get(f"/journeys/{JOURNEY}/flow", headers=AUTH)).text()
        assert "entered 1" in page and "sent 1" in page and "failed 1" in page
        assert "waiting 1" in page
        later = await (
            await client.get(f"/journeys/{JOURNEY}/flow?since=2026-11-03", headers=AUTH)
        ).text()
        assert "entered" not in later and "waiting 1" in later  # waiting is now, whatever the range
        conversions = await client.get(
            f"/journeys/{JOURNEY}/conversions?until=2026-11-02", headers=AUTH
        )
        assert (await conversions.json())["versions"] == {}
        bad = await client.get(f"/journeys/{JOURNEY}/figures?since=yesterday", headers=AUTH)
        assert bad.status == 400 and (await bad.json())["where"] == "since"
        backwards = await client.get(
            f"/journeys/{JOURNEY}/figures?since=2026-11-03&until=2026-11-02", headers=AUTH
        )
        assert backwards.status == 400 and (await backwards.json())["where"] == "until"
        assert (
            await client.get(f"/journeys/{JOURNEY}/figures?format=xml", headers=AUTH)
        ).status == 400
        assert (await client.get("/journeys/nothing/figures", headers=AUTH)).status == 404
    finally:
        await client.close()

    env = {"MONGO_DB": stack.mongo_db}
    args = ["export", JOURNEY, "--since", "2026-11-02T09:30", "--until", "2026-11-02T10:00"]
    exported = await asyncio.to_thread(CliRunner().invoke, main, args, env=env)
    assert exported.exit_code == 0, exported.output
    assert exported.output == "version,step,figure,hour,count\n1,-,entered,2026-11-02T09:00:00Z,1\n"
    as_json = await asyncio.to_thread(
        CliRunner().invoke, main, ["export", JOURNEY, "--format", "json"], env=env
    )
    assert welcome_figures(orjson.loads(as_json.output)["figures"])["sent"] == 1
    missing = await asyncio.to_thread(CliRunner().invoke, main, ["export", "nothing"], env=env)
    assert missing.exit_code == 1 and "no journey 'nothing'" in missing.output
    bad = await asyncio.to_thread(
        CliRunner().invoke, main, ["export", JOURNEY, "--since", "soon"], env=env
    )
    assert bad.exit_code == 2 and "--since" in bad.output


async def test_each_provider_report_counts_once(stack) -> None:  # noqa: F811
    await fill_timeline(stack)  # deploys the journey
    await record_send(stack, "d-ada", journey_id=JOURNEY, channel="sms")
    api = await callback_api(stack)
    try:
        for kind, report_id in (("delivered", "r1"), ("opened", "r2"), ("opened", "r3")):
            report = orjson.dumps(
                {"dispatch_id": "d-ada", "event": kind, "id": report_id, "at": NINE}
            )
            signed = {signing.SIGNATURE_HEADER: signing.sign(SECRET, int(time.time()), report)}
            for _ in range(2):  # the provider retries: one event, one count
                assert (await api.post("/callbacks/sms", data=report, headers=signed)).ok
        nine = f"/journeys/{JOURNEY}/figures?since={NINE}&until=2026-11-02T10:00Z"
        figures = await (
            await api.get(nine, headers={"Authorization": f"Bearer {CALLBACK_API_TOKEN}"})
        ).json()
    finally:
        await api.close()
    # at the report's hour (9:00); ada's own welcome, sent now, is outside the range
    assert welcome_figures(figures["figures"]) == {"delivered": 1, "opened": 2}
