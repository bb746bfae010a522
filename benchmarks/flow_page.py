"""The flow page's latency at the store's size after the burst (1.1M users at the full size):
through a real API process and its HTTP route with a read token, as an operator's browser asks
for it. Its figures come from hourly counts and the `waiting` gauge (app/store/figures.py), so
the time must not grow with the users; the `waiting` count read off the page is checked against
the users the benchmark parked there."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import time
import uuid
from collections.abc import Mapping
from typing import Any

import aiohttp

LOADS = 20  # page loads per journey
WAITING = re.compile(r'data-step="([^"]+)" data-figure="waiting"><td>[^<]*</td><td>[^<]*</td>'
                     r"<td>(\d+)</td>")  # fmt: skip


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _until_up(session: aiohttp.ClientSession, base: str, process: subprocess.Popen) -> None:
    async with asyncio.timeout(60):
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the API exited with {process.returncode}")
            try:
                async with session.get(f"{base}/health") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.2)


async def flow_page_latency(
    journeys_command: str, env: Mapping[str, str], journey_ids: list[str]
) -> dict[str, Any]:
    """p50 and max of `LOADS` loads of each journey's flow page (the first load included: no
    cache to warm), and the `waiting` figures each page showed (step -> count)."""
    port, secret = _free_port(), uuid.uuid4().hex
    process = subprocess.Popen(
        [journeys_command, "api"],
        env={**env, "API_PORT": str(port), "API_TOKENS": f"bench:read:{secret}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    timings: list[float] = []
    waiting: dict[str, dict[str, int]] = {}
    try:
        headers = {"Authorization": f"Bearer {secret}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            await _until_up(session, base, process)
            for journey_id in journey_ids:
                for _ in range(LOADS):
                    started = time.monotonic()
                    async with session.get(f"{base}/journeys/{journey_id}/flow") as response:
                        page = await response.text()
                        if response.status != 200:
                            raise RuntimeError(f"flow page of {journey_id}: {response.status}")
                    timings.append(time.monotonic() - started)
                waiting[journey_id] = {step: int(n) for step, n in WAITING.findall(page)}
    finally:
        process.terminate()
        process.wait(30)
    timings.sort()
    return {
        "flow_page_p50_s": timings[len(timings) // 2],
        "flow_page_max_s": timings[-1],
        "flow_page_loads": len(timings),
        "flow_page_waiting": waiting,
    }
