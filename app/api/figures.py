"""A journey's figures for a date range, as the API and `journeys export` give them: the range
read from `since`/`until`, and the export's rows as CSV (one row per version, step, figure and
hour, with a header) or JSON."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

FORMATS = ("csv", "json")
COLUMNS = ("version", "step", "figure", "hour", "count")
CONTENT_TYPES = {"csv": "text/csv", "json": "application/json"}


class RangeError(ValueError):
    """A `since`, `until` or `format` the export cannot use: what, and what was expected."""

    def __init__(self, where: str, given: str, expected: str) -> None:
        super().__init__(f"{where}={given!r} is not {expected}")
        self.where = where
        self.expected = expected


def moment(where: str, text: str | None) -> datetime | None:
    """A date (`2026-11-02`: its midnight) or an ISO 8601 time; without an offset it is UTC."""
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise RangeError(where, text, "a date or time in ISO 8601 (2026-11-02T09:00Z)") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def date_range(query: Mapping[str, str]) -> tuple[datetime | None, datetime | None]:
    """(since, until) from a request's query; both optional (all time), until after since.
    Figures are kept per hour, so every hour that overlaps [since, until) counts whole."""
    since, until = moment("since", query.get("since")), moment("until", query.get("until"))
    if since is not None and until is not None and until <= since:
        raise RangeError("until", query["until"], f"after since ({query['since']})")
    return since, until


def export_format(given: str | None) -> str:
    chosen = given or "json"
    if chosen not in FORMATS:
        raise RangeError("format", chosen, "csv or json")
    return chosen


def export_text(
    journey_id: str,
    since: datetime | None,
    until: datetime | None,
    rows: list[dict[str, Any]],
    chosen: str,
) -> str:
    """The rows in the chosen format: CSV with a header, or JSON saying what was asked."""
    if chosen == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue()
    asked = {
        "id": journey_id,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "figures": rows,
    }
    return orjson.dumps(asked).decode()
