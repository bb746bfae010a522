"""The send's wire forms: an engine send through the outbox and the send buffer's encoding to a
dispatch record on the `send` topic, and back in the sender, loses nothing on the way."""

from __future__ import annotations

from datetime import UTC, datetime

from app.dispatch.record import DispatchRecord, DispatchStep, Recipient, buffer_entry
from app.engine import JourneyEngine, Send, UserEvent, load_journey_text
from app.engine.definitions import WebhookRequest
from app.engine.simulator import Simulator
from app.topics import load_contract

SEND_AT = datetime(2026, 11, 2, 9, 15, tzinfo=UTC)
SEND = Send(
    dispatch_id="0f2a18964f7204d5093e4774d3d21775",
    journey_id="onboarding",
    journey_version=2,
    user_id="ada",
    entry_id="e-1",
    step_id="welcome",
    channel="email",
    template_id="welcome-mail",
    locale="en-GB",
    variables={"first_name": "Ada"},
    address="ada@x.test",
    send_at=SEND_AT,
)


def test_an_outbox_send_becomes_a_buffer_entry() -> None:
    step, send_at, recipient = buffer_entry(SEND.to_record())
    assert step == DispatchStep("onboarding", 2, "welcome", "email", "welcome-mail")
    assert send_at == SEND_AT
    assert recipient == Recipient(
        "ada", "0f2a18964f7204d5093e4774d3d21775", "en-GB", {"first_name": "Ada"}, "ada@x.test"
    )
    assert buffer_entry({**SEND.to_record(), "send_at": SEND_AT}) == (step, send_at, recipient)


def test_a_buffered_recipient_is_the_same_member_however_its_fields_were_ordered() -> None:
    _, _, recipient = buffer_entry(SEND.to_record())
    encoded = recipient.to_json()
    reordered = Recipient.from_record(dict(reversed(list(recipient.to_record().items()))))
    assert reordered.to_json() == encoded
    assert Recipient.from_json(encoded) == recipient


def test_a_dispatch_record_keeps_the_send_topic_contract_both_ways() -> None:
    step, send_at, recipient = buffer_entry(SEND.to_record())
    record = DispatchRecord(step=step, send_at=send_at, recipients=(recipient,))
    wire = record.to_record()
    load_contract("send").validate(wire)
    assert wire["send_at"] == "2026-11-02T09:15:00Z"
    assert DispatchRecord.from_record(wire) == record


HOOKED = """\
id: hooked
version: 3
entry: {event: signed_up}
steps:
  crm:
    type: message
    channel: webhook
    template: welcome
    url: https://crm.example.com/hooks
    method: PATCH
    headers: {X-Team: lifecycle, Authorization: Bearer abc}
    body: '{"user": {{ user_id | tojson }}}'
"""


def test_a_webhook_steps_request_travels_from_the_journey_file_to_the_sender() -> None:
    simulator = Simulator(JourneyEngine([load_journey_text(HOOKED)]))
    simulator.feed([UserEvent("e1", "ada", "signed_up", SEND_AT)])
    (send,) = [e.effect for e in simulator.effects if isinstance(e.effect, Send)]
    step, send_at, recipient = buffer_entry(send.to_record())
    wire = DispatchRecord(step=step, send_at=send_at, recipients=(recipient,)).to_record()
    load_contract("send").validate(wire)
    assert wire["webhook"] == {
        "url": "https://crm.example.com/hooks",
        "method": "PATCH",
        "headers": {"Authorization": "Bearer abc", "X-Team": "lifecycle"},
        "body": '{"user": {{ user_id | tojson }}}',
    }
    assert DispatchRecord.from_record(wire).step.webhook == WebhookRequest(
        "https://crm.example.com/hooks",
        "PATCH",
        (("Authorization", "Bearer abc"), ("X-Team", "lifecycle")),
        '{"user": {{ user_id | tojson }}}',
    )
