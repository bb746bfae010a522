"""The wire contract: one JSON file per topic in `topics/`, with its schema, key, partitions and
retention. Producers and consumers validate against the same file, so a bad record gets the same
clear error wherever it is caught.

Records are checked by a validator compiled from the schema (fastjsonschema: about 15 us for a
user event, some 20 times less than the reference validator, on every worker's hot path). Only a
record it refuses goes through the reference validator (jsonschema), which says what is wrong and
stays the judge: the compiled one implements draft 7, so the schema is adapted to it where the
drafts differ and refused where it uses what the compiled one does not check as draft 2020-12
does."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError, best_match
from rfc3339_validator import validate_rfc3339

from app.config import Settings

# user-events-by-user and timeline are internal: the worker re-produces user-events to the first
# by user id, and its emitter produces the effects its timeline projector writes to the second.
TOPIC_NAMES = ("user-events", "user-events-by-user", "timers", "send", "timeline", "dead-letter")
DEFAULT_MAX_RECORD_BYTES = 256 * 1024


def contracts_dir() -> Path:
    """The repo's `topics/` folder, unless JOURNEYS_TOPICS_DIR says otherwise (installed images)."""
    return Settings().contracts_dir


class RecordError(ValueError):
    """A record no retry can fix: what was wrong, where in the record, what was expected."""

    def __init__(self, topic: str, where: str, what: str, expected: str) -> None:
        self.topic = topic
        self.where = where
        self.what = what
        self.expected = expected
        super().__init__(f"{topic} record at {where}: {what} (expected {expected})")


# Rules whose messages name the record's keys, not its values.
KEY_RULES = ("required", "additionalProperties", "dependentRequired")
# The keywords the compiled validator checks as draft 2020-12 does (with `$ref` siblings moved
# under `allOf`: draft 7 ignores them), and the annotations it may ignore. A contract using any
# other keyword is refused when it loads rather than checked less than its schema says.
COMPILED_KEYWORDS = frozenset(
    {
        "$ref", "additionalProperties", "allOf", "anyOf", "const", "enum", "exclusiveMaximum",
        "exclusiveMinimum", "format", "if", "then", "else", "items", "maxItems", "maxLength",
        "maximum", "maxProperties", "minItems", "minLength", "minimum", "minProperties", "not",
        "oneOf", "pattern", "properties", "propertyNames", "required", "type", "uniqueItems",
    }
)  # fmt: skip
ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "$comment", "title", "description", "examples"})
# Formats, checked as the reference validator's FormatChecker checks them.
FORMATS = {"date-time": lambda value: validate_rfc3339(value.upper())}


@dataclass(frozen=True)
class TopicContract:
    name: str
    description: str
    key_field: str
    partitions: int
    config: Mapping[str, str]
    schema: Mapping[str, Any]
    examples: tuple[Mapping[str, Any], ...]
    # Topics whose partition p holds the same users as this one's partition p.
    co_partitioned_with: tuple[str, ...] = ()

    @property
    def validator(self) -> Draft202012Validator:
        return _validator(self.name)

    def validate(self, record: Any) -> None:
        try:
            compiled_validator(self.name)(record)
        except fastjsonschema.JsonSchemaValueException:
            self._explain(record)

    def _explain(self, record: Any) -> None:
        """Raises the reference validator's error for a record the compiled one refused; none
        when the reference accepts it (the compiled one may refuse more: a pattern's `$` does not
        match before a final newline there)."""
        error = best_match(self.validator.iter_errors(record))
        if error is None:
            return
        path = [str(part) for part in error.absolute_path]
        if "propertyNames" in error.absolute_schema_path:
            path.append(str(error.instance).replace("\0", "\\u0000"))  # the key is the place
        where = "/" + "/".join(path)
        expected = error.schema.get("description") or _expected_from(error.validator, error.schema)
        raise RecordError(self.name, where, _found(error, self.schema), expected)

    def decode(
        self, raw: bytes | None, max_bytes: int = DEFAULT_MAX_RECORD_BYTES
    ) -> dict[str, Any]:
        """Bytes off the wire to a validated record, or a RecordError saying why not."""
        if raw is None:
            raise RecordError(self.name, "/", "the record has no value", "a JSON object")
        if len(raw) > max_bytes:
            raise RecordError(
                self.name, "/", f"the record is {len(raw)} bytes", f"at most {max_bytes} bytes"
            )
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise RecordError(self.name, "/", f"not JSON: {exc}", "a UTF-8 JSON object") from None
        self.validate(record)
        return record

    def key_of(self, record: Mapping[str, Any]) -> bytes:
        return str(record[self.key_field]).encode()


def _found(error: ValidationError, root: Mapping[str, Any]) -> str:
    """What the record holds where it breaks a rule, never quoting a value (values carry
    personal data into dead letters and logs): the rule's title when it has one, the message
    when it names only keys, else the value's JSON type and size."""
    if error.schema is not root and error.schema.get("title"):
        return str(error.schema["title"])
    if error.validator in KEY_RULES:
        return error.message
    if "propertyNames" in error.absolute_schema_path:
        return "a key not allowed here"
    shape, rule = _shape(error.instance), error.validator_value
    if error.validator == "type":
        return f"{shape}, not of type {orjson.dumps(rule).decode()}"
    if error.validator == "format":
        return f"{shape} that is not a {rule}"
    return f"{shape} that breaks its '{error.validator}' rule"


def _shape(value: Any) -> str:
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case str():
            return f"a string of {_count(len(value), 'character')}"
        case list():
            return f"an array of {_count(len(value), 'item')}"
        case dict():
            return f"an object of {_count(len(value), 'key')}"
    return type(value).__name__


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _expected_from(keyword: str, schema: Mapping[str, Any]) -> str:
    if keyword in schema:
        return f"{keyword} {orjson.dumps(schema[keyword]).decode()}"
    return f"a value matching the '{keyword}' rule of the contract"


@cache
def load_contract(name: str) -> TopicContract:
    path = contracts_dir() / f"{name}.json"
    data = orjson.loads(path.read_bytes())
    Draft202012Validator.check_schema(data["schema"])
    compilable(data["schema"], f"{path}: /schema", {})  # refused now, not at its first record
    return TopicContract(
        name=data["topic"],
        description=data["description"],
        key_field=data["key"]["field"],
        partitions=int(data["partitions"]),
        config={str(k): str(v) for k, v in data.get("config", {}).items()},
        schema=data["schema"],
        examples=tuple(data.get("examples", ())),
        co_partitioned_with=tuple(data.get("co_partitioned_with", ())),
    )


def read_jsonl(name: str, path: Path) -> list[dict[str, Any]]:
    """Records of one topic from a JSON-lines file, each validated; a bad line raises RecordError
    naming the file and line."""
    contract = load_contract(name)
    records = []
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(contract.decode(line))
        except RecordError as error:
            raise RecordError(
                name, f"{path}:{number} {error.where}", error.what, error.expected
            ) from None
    return records


def load_contracts() -> list[TopicContract]:
    return [load_contract(name) for name in TOPIC_NAMES]


@cache
def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(load_contract(name).schema, format_checker=FormatChecker())


@cache
def compiled_validator(name: str) -> Callable[[Any], Any]:
    formats: dict[str, Callable[[str], bool]] = dict(FORMATS)
    schema = compilable(load_contract(name).schema, name, formats)
    return fastjsonschema.compile(
        schema, formats=formats, use_default=False, detailed_exceptions=False
    )


def compilable(schema: Any, where: str, formats: dict[str, Callable[[str], bool]]) -> Any:
    """The schema as the compiled validator reads it the way draft 2020-12 does: a `$ref` with
    sibling keywords becomes one more part of an `allOf`; a `const` an `enum` of one (the same for
    strings, and the compiled validator fails on `const` without detailed exceptions); and a
    `not` of a `pattern` a string in a format added to `formats` (the same test, without the
    exception the compiled `not` raises for every value it lets through). Raises ValueError
    naming a keyword, format or enumerated value it would check otherwise (`where` says where)."""
    if isinstance(schema, list):
        return [compilable(part, f"{where}/{i}", formats) for i, part in enumerate(schema)]
    if not isinstance(schema, dict):
        return schema
    adapted: dict[str, Any] = {}
    parts: list[dict[str, Any]] = []  # to check besides the schema's own `allOf`
    for keyword, value in schema.items():
        place = f"{where}/{keyword}"
        if keyword not in COMPILED_KEYWORDS | ANNOTATIONS:
            raise ValueError(f"{place}: the compiled validator does not check '{keyword}'")
        if keyword == "format" and value not in FORMATS:
            raise ValueError(f"{place}: the compiled validator does not check format '{value}'")
        if keyword in ("enum", "const") and not all(
            isinstance(v, str) for v in (value if keyword == "enum" else [value])
        ):
            raise ValueError(f"{place}: only strings compare alike in both validators")
        if keyword == "items" and not isinstance(value, dict):
            raise ValueError(f"{place}: draft 7 reads an array of `items` as prefixItems")
        if keyword in ("properties", "$defs"):
            adapted[keyword] = {k: compilable(v, f"{place}/{k}", formats) for k, v in value.items()}
        elif keyword in ("enum", "required", "examples"):
            adapted[keyword] = value
        elif keyword == "const":
            adapted["enum"] = [value]
        elif (
            keyword == "not"
            and isinstance(value, dict)
            and value.keys() - ANNOTATIONS == {"pattern"}
        ):
            parts.append(_not_matching(value["pattern"], formats))
        else:
            adapted[keyword] = compilable(value, place, formats)
    if "$ref" in adapted and len(adapted.keys() - ANNOTATIONS) > 1:
        parts.append({"$ref": adapted.pop("$ref")})
    if parts:
        adapted["allOf"] = [*adapted.get("allOf", []), *parts]
    return adapted


def _not_matching(pattern: str, formats: dict[str, Callable[[str], bool]]) -> dict[str, Any]:
    """`{"not": {"pattern": P}}` as a compiled validator checks it fast: a string P does not
    match (a value of another type passes the pattern, so it fails the `not`)."""
    regex = re.compile(pattern)
    name = f"not-pattern-{len(formats)}"
    formats[name] = lambda value: regex.search(value) is None
    return {"type": "string", "format": name}
