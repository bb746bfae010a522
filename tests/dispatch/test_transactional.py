"""A transactional send request: what is accepted, its dispatch id, and the record it becomes."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from app.dispatch.transactional import TRANSACTIONAL_JOURNEY, SendRequest, SendRequestError

AT = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)


def body(**fields: object) -> bytes:
    base = {"user_id": "u-1", "template": "welcome", "channel": "email", "idempotency_key": "k-1"}
    return orjson.dumps({**base, **fields})


def test_the_dispatch_id_comes_from_the_key_alone() -> None:
    first = SendRequest.parse(body(data={"first_name": "Ada"}))
    again = SendRequest.parse(body(data={"first_name": "Bea"}, user_id="u-2"))
    other = SendRequest.parse(body(idempotency_key="k-2"))
    assert first.dispatch_id == again.dispatch_id != other.dispatch_id
    assert len(first.dispatch_id) == 32 and int(first.dispatch_id, 16) >= 0
    assert first.digest != again.digest  # a different request with the same key
    assert first.digest == SendRequest.parse(body(data={"first_name": "Ada"})).digest


@pytest.mark.parametrize(
    ("raw", "where", "expected"),
    [
        (b"[1]", "body", "a JSON object"),
        (b"{not json", "body", "a JSON object"),
        (body(colour="red"), "colour", "no other fields than"),
        (body(idempotency_key=""), "idempotency_key", "a string of 1 to 256 characters"),
        (body(user_id=None), "user_id", "a string of 1 to 128 characters"),
        (body(template="../secrets"), "template", "a template name"),
        (body(channel="fax"), "channel", "one of email, push, sms, webhook"),
        (body(data=["x"]), "data", "an object of template variables"),
        (body(locale=7), "locale", "a string, if given, of 1 to 35 characters"),
        (body(address=""), "address", "a string, if given, of 1 to 2048 characters"),
    ],
)
def test_a_bad_request_says_where_and_what_was_expected(
    raw: bytes, where: str, expected: str
) -> None:
    with pytest.raises(SendRequestError) as raised:
        SendRequest.parse(raw)
    assert raised.value.where == where and expected in raised.value.expected


def test_the_record_takes_the_users_address_locale_and_attributes_under_the_data() -> None:
    send = SendRequest.parse(body(data={"first_name": "Ada", "order": 42}))
    attributes = {"email": "ada@x.test", "first_name": "A.", "plan": "pro"}
    record = send.record(attributes, "fr-FR", AT)
    (recipient,) = record.recipients
    assert record.step.journey_id == TRANSACTIONAL_JOURNEY and record.send_at == AT
    assert (record.step.channel, record.step.template_id) == ("email", "welcome")
    assert recipient.dispatch_id == send.dispatch_id and recipient.user_id == "u-1"
    assert (recipient.address, recipient.locale) == ("ada@x.test", "fr-FR")
    assert recipient.variables == {**attributes, "first_name": "Ada", "order": 42}
    assert record.batch_id == send.record(attributes, "fr-FR", AT).batch_id


def test_the_requests_address_and_locale_win_and_a_webhook_needs_none() -> None:
    send = SendRequest.parse(body(address="bea@x.test", locale="de"))
    (recipient,) = send.record({"email": "ada@x.test"}, "fr", AT).recipients
    assert (recipient.address, recipient.locale) == ("bea@x.test", "de")
    hook = SendRequest.parse(body(channel="webhook"))
    assert hook.record({}, None, AT).recipients[0].address is None


def test_no_address_anywhere_is_refused() -> None:
    send = SendRequest.parse(body(channel="sms"))
    with pytest.raises(SendRequestError, match="the user has no 'phone' attribute"):
        send.record({"email": "ada@x.test"}, None, AT)
