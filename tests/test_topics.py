"""The wire contract: every topic file is a valid schema whose examples pass, bad records get an
error that says what, where and what was expected, and `topics apply` creates and compares."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time

import fastjsonschema
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import InvalidTimestampError
from jsonschema import Draft202012Validator

from app.config import Settings
from app.topic_admin import apply_topics
from app.topics import (
    TOPIC_NAMES,
    RecordError,
    compilable,
    compiled_validator,
    load_contract,
    load_contracts,
)
from tests.generated import SIM, generate_case


@pytest.mark.parametrize("name", TOPIC_NAMES)
def test_contract_is_valid_json_schema_and_its_examples_validate(name: str) -> None:
    contract = load_contract(name)
    Draft202012Validator.check_schema(contract.schema)
    assert contract.examples, f"{name} has no example record"
    for example in contract.examples:
        contract.validate(example)
        assert contract.decode(orjson.dumps(example)) == example
        assert contract.key_of(example)


def test_the_journeys_inputs_are_co_partitioned_by_user_id() -> None:
    by_user, timers = load_contract("user-events-by-user"), load_contract("timers")
    assert by_user.co_partitioned_with == ("timers",)
    assert timers.co_partitioned_with == ("user-events-by-user",)
    assert by_user.partitions == timers.partitions
    assert by_user.key_field == timers.key_field == "user_id"


@pytest.mark.parametrize("name", TOPIC_NAMES)
def test_co_partitioned_topics_agree_both_ways(name: str) -> None:
    contract = load_contract(name)
    for other in map(load_contract, contract.co_partitioned_with):
        assert name in other.co_partitioned_with
        assert (other.partitions, other.key_field) == (contract.partitions, contract.key_field)


def test_user_events_by_user_carries_user_events_records_unchanged() -> None:
    """The repartition step re-produces user-events records as they are: the same schema."""
    source, by_user = load_contract("user-events"), load_contract("user-events-by-user")
    assert {**by_user.schema, "$id": source.schema["$id"]} == source.schema
    assert source.co_partitioned_with == ()  # producers may partition it as they like


@pytest.mark.parametrize(
    "record",
    [
        {"attributes": "ana@example.test"},
        {"user_id": ["Ana Lima", "+1 555 0100"]},
        {"locale": ["Ana Lima"]},
        {"subscriptions": {"email": "ana@example.test"}},
        {"properties": "ana@example.test"},
        {"at": "ana@example.test"},
    ],
)
def test_a_bad_user_event_error_never_quotes_a_value(record: dict) -> None:
    """Reasons go into dead letters and logs: they say where and what kind of value, never
    the value (personal data)."""
    good = {"event_id": "e", "user_id": "u", "name": "x", "at": "2026-01-01T00:00:00Z"}
    with pytest.raises(RecordError) as caught:
        load_contract("user-events").decode(orjson.dumps({**good, **record}))
    assert caught.value.where.startswith("/" + next(iter(record)))
    for secret in ("ana@example.test", "Ana Lima", "555"):
        assert secret not in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "where", "fragment"),
    [
        (b"not json", "/", "not JSON"),
        (b'{"user_id": "u"}', "/", "'event_id' is a required property"),
        (b'{"event_id":"e","user_id":"u","name":"x","at":"yesterday"}', "/at", "date-time"),
        (b'{"event_id":"e","user_id":"","name":"x","at":"2026-01-01T00:00:00Z"}', "/user_id", ""),
        (
            b'{"event_id":"e","user_id":"u","name":"x","at":"2026-01-01T00:00:00Z","extra":1}',
            "/",
            "'extra' was unexpected",
        ),
        (
            b'{"event_id":"e","user_id":"u","name":"x","at":"2026-01-01T00:00:00Z",'
            b'"subscriptions":{"fax":true}}',
            "/subscriptions/fax",
            "a key not allowed here",
        ),
    ],
)
def test_bad_user_event_gets_a_clear_error(raw: bytes, where: str, fragment: str) -> None:
    with pytest.raises(RecordError) as caught:
        load_contract("user-events").decode(raw)
    assert caught.value.where == where
    assert fragment in caught.value.what
    assert caught.value.expected
    assert str(caught.value).startswith(f"user-events record at {where}: ")


def test_oversize_record_is_refused_before_parsing() -> None:
    with pytest.raises(RecordError, match="at most 100 bytes"):
        load_contract("user-events").decode(b"{" + b" " * 200 + b"}", max_bytes=100)


def test_timer_record_errors_name_the_missing_field_of_its_kind() -> None:
    with pytest.raises(RecordError, match="'timer_id' is a required property"):
        load_contract("timers").decode(b'{"kind": "timer", "user_id": "u"}')
    with pytest.raises(RecordError, match="'tick' is a required property"):
        load_contract("timers").decode(
            b'{"kind": "scheduled_entry", "user_id": "u", "journey_id": "j"}'
        )


async def test_topics_apply_creates_missing_topics_sets_configs_and_reports_partitions(
    servers: Settings, unique: str
) -> None:
    settings = dataclasses.replace(servers, topic_prefix=unique)
    contracts = load_contracts()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    unique + "send",
                    2,
                    1,
                    topic_configs={"retention.ms": "1000", "segment.ms": "3600000"},
                )
            ]
        )

        first = {r.topic: r for r in await apply_topics(settings, contracts)}
        created = {topic for topic, report in first.items() if report.created}
        assert created == {unique + name for name in TOPIC_NAMES if name != "send"}
        assert unique + "user-events-by-user" in created
        assert first[unique + "send"].differences == ["2 partitions, contract says 8"]
        assert first[unique + "send"].updated == ["retention.ms=604800000 (was 1000)"]
        assert "DIFFERS" in first[unique + "send"].describe()

        # The broker applies a config change a moment after answering: the next apply may still
        # see the old value (and sets it again, harmlessly); it settles within seconds.
        for _ in range(20):
            second = {r.topic: r for r in await apply_topics(settings, contracts)}
            if not any(report.updated for report in second.values()):
                break
            await asyncio.sleep(0.5)
        assert not any(report.created or report.updated for report in second.values())
        assert [t for t, r in second.items() if r.differences] == [unique + "send"]
        resource = ConfigResource(ConfigResourceType.TOPIC, unique + "send")
        (described,) = await admin.describe_configs([resource])
        configs = {entry[0]: entry[1] for result in described.resources for entry in result[4]}
        assert configs["segment.ms"] == "3600000"  # the operator's own override stays
    finally:
        await admin.delete_topics([unique + name for name in TOPIC_NAMES])
        await admin.close()


async def test_user_events_refuses_record_timestamps_outside_the_accepted_skew(
    servers: Settings, unique: str
) -> None:
    """A producer may stamp a record with its event's time (a replay), but not move its receipt
    to 1970 or 2999: Kafka refuses it, so the engine's event-time policy cannot be dodged."""
    settings = dataclasses.replace(servers, topic_prefix=unique)
    await apply_topics(settings, [load_contract("user-events")])
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    topic = settings.topic("user-events")
    now_ms = int(time.time() * 1000)
    try:
        for stamp in (None, now_ms - 3 * 86_400_000, now_ms + 60_000):
            await producer.send_and_wait(topic, b"{}", timestamp_ms=stamp)
        for stamp in (1_000, now_ms - 8 * 86_400_000, now_ms + 3_600_000, 32_503_680_000_000):
            with pytest.raises(InvalidTimestampError):
                await producer.send_and_wait(topic, b"{}", timestamp_ms=stamp)
    finally:
        await producer.stop()
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        await admin.delete_topics([topic])
        await admin.close()


# Values that break a rule somewhere in a contract, or nearly: wrong types, empty and long
# strings, integers beyond 64 bits (as int and as float), keys the store refuses, bad times.
TRICKY_VALUES = [
    None, True, 0, 1.0, 1.5, 2**63, -(2**63) - 1, 1e30, "", "x" * 300, "a.b", "$a", "a\0b",
    "2026-13-01T00:00:00Z", "2026-01-01T00:00:00+0100", "2026-01-01t00:00:00z", "ok", [], {},
    ["a", 2**64], {"a.b": 1}, {"$set": 1}, {"ok": {"n": 1e30}}, {"ok": [{"\0": 1}]},
]  # fmt: skip


def variants(record: dict) -> list[dict]:
    """The record with each top-level field, and each field one level down, replaced by each
    tricky value, removed, or joined by an unknown key."""
    found = [{**record, "unknown": 1}]
    for key, value in record.items():
        found.append({k: v for k, v in record.items() if k != key})
        found += [{**record, key: tricky} for tricky in TRICKY_VALUES]
        if isinstance(value, dict):
            for inner in [*value, "fresh", "a.b", "$x", "topic\n"]:
                found += [{**record, key: {**value, inner: tricky}} for tricky in TRICKY_VALUES]
    return found


def reference_accepts(name: str, record: dict) -> bool:
    return not any(load_contract(name).validator.iter_errors(record))


@pytest.mark.parametrize("name", TOPIC_NAMES)
def test_the_compiled_validator_decides_as_the_reference_one(name: str) -> None:
    """Records are checked by a compiled validator and explained by the reference one: over
    every contract's examples and hundreds of variants, `validate` accepts exactly what the
    reference accepts, and the compiled validator alone never accepts what it refuses (it may
    refuse more: a pattern's `$` does not match before a final newline there)."""
    contract = load_contract(name)
    records = [variant for example in contract.examples for variant in variants(dict(example))]
    if name in ("user-events", "user-events-by-user"):
        records += [dict(r) for seed in range(3) for r in generate_case(seed, SIM).events]
    if name == "timeline":  # the effects, one level further down than `variants` reaches
        for example in contract.examples:
            entry = example["entries"][0]
            records += [
                {**example, "entries": [{**entry, "effect": effect}]}
                for effect in variants(dict(entry["effect"]))
            ]
    assert len(records) > 200
    for record in records:
        expected = reference_accepts(name, record)
        try:
            compiled_validator(name)(record)
            compiled = True
        except fastjsonschema.JsonSchemaValueException:
            compiled = False
        assert not compiled or expected, f"compiled validator accepts {record}"
        try:
            contract.validate(record)
            accepted = True
        except RecordError:
            accepted = False
        assert accepted == expected, record


@pytest.mark.parametrize(
    ("schema", "fragment"),
    [
        ({"dependentRequired": {"a": ["b"]}}, "does not check 'dependentRequired'"),
        ({"properties": {"a": {"format": "email"}}}, "/properties/a/format"),
        ({"enum": ["a", 1]}, "only strings"),
        ({"const": True}, "only strings"),
        ({"items": [{"type": "string"}]}, "prefixItems"),
    ],
)
def test_a_schema_the_compiled_validator_would_check_less_is_refused(
    schema: dict, fragment: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        compilable(schema, "contract", {})


def test_a_ref_with_siblings_checks_both_in_the_compiled_validator() -> None:
    """Draft 7 ignores a `$ref`'s siblings; the adapted schema keeps them."""
    schema = {
        "properties": {"n": {"type": "string", "maxLength": 2, "$ref": "#/$defs/k"}},
        "$defs": {"k": {"not": {"pattern": "^\\$"}}},
    }
    formats: dict = {}
    check = fastjsonschema.compile(compilable(schema, "t", formats), formats=formats)
    check({"n": "ab"})
    for bad in ("abc", "$a", 7):
        with pytest.raises(fastjsonschema.JsonSchemaValueException):
            check({"n": bad})


def test_a_contract_the_compiled_validator_cannot_check_is_refused_when_it_loads(
    tmp_path, monkeypatch
) -> None:
    """At start-up, not at its first record (where every record would become a dead letter)."""
    data = orjson.loads((Settings().contracts_dir / "timers.json").read_bytes())
    data["schema"]["dependentRequired"] = {"tick": ["journey_id"]}
    (tmp_path / "timers.json").write_bytes(orjson.dumps(data))
    monkeypatch.setenv("JOURNEYS_TOPICS_DIR", str(tmp_path))
    with pytest.raises(ValueError, match=re.escape("timers.json: /schema/dependentRequired")):
        load_contract.__wrapped__("timers")
