"""Durations in the journey files' notation."""

from __future__ import annotations

from datetime import timedelta

UNITS = (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def format_duration(duration: timedelta) -> str:
    """The loader's own notation: 90 minutes reads 1h30m."""
    seconds, parts = int(duration.total_seconds()), []
    for unit, size in UNITS:
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"
