"""POST /journeys/validate checks a journey's templates as `journeys validate` does."""

from __future__ import annotations

from tests.api.test_api import AUTH, api_client, stack  # noqa: F401 (stack is a fixture)

JOURNEY = """\
id: checked
version: 1
entry: {event: signed_up}
steps:
  hello: {type: message, channel: email, template: %s}
"""


async def test_validate_reports_a_missing_template(stack) -> None:  # noqa: F811
    client = await api_client(stack)
    try:
        missing = await client.post(
            "/journeys/validate", data=JOURNEY % "no_such_template", headers=AUTH
        )
        body = await missing.json()
        assert missing.status == 422
        assert (body["where"], body["line"]) == ("/steps/hello/template", 5)
        assert "found 'no_such_template', expected a template in " in body["error"]
        found = await client.post("/journeys/validate", data=JOURNEY % "welcome", headers=AUTH)
        assert found.status == 200 and (await found.json())["valid"] is True
    finally:
        await client.close()
