"""`GET /ready`: Kafka, MongoDB and Redis probed at once, each with a short timeout (a server
that hangs must not hang the probe that asks about it), each reported with its status and the
time it took."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

PROBE_TIMEOUT_SECONDS = 2.0

Probe = Callable[[], Awaitable[object]]


async def _check(probe: Probe, timeout: float) -> dict[str, object]:
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            await probe()
        status = "ok"
    except TimeoutError:
        status = f"no answer in {timeout} s"
    except Exception as error:  # readiness reports any failure, whatever it is
        status = repr(error)
    return {"status": status, "seconds": round(time.monotonic() - started, 4)}


async def readiness(
    probes: dict[str, Probe], timeout: float = PROBE_TIMEOUT_SECONDS
) -> tuple[bool, dict[str, dict[str, object]]]:
    """Whether every probe passed, and each one's report by name."""
    reports = await asyncio.gather(*(_check(probe, timeout) for probe in probes.values()))
    checks = dict(zip(probes, reports, strict=True))
    return all(report["status"] == "ok" for report in checks.values()), checks
