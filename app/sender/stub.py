"""A provider stub on loopback for tests and the demo: it accepts email, push, webhook and SMS
requests, honours `Idempotency-Key` like a real provider (a repeated key is answered as before
and not delivered again), counts requests per key, prints deliveries as they land, and can be told
to misbehave: answer 429 with Retry-After, 500 or 400, hang, or drop the connection."""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

MODES = ("ok", "429", "500", "400", "hang", "drop")


@dataclass
class ProviderStub:
    print_deliveries: bool = False
    requests: Counter[str] = field(default_factory=Counter)  # per idempotency key
    delivered: dict[str, dict[str, Any]] = field(default_factory=dict)  # accepted once per key
    # Misbehaviours to play, in order, one per request, before answering normally again.
    script: deque[str] = field(default_factory=deque)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/_script", self._set_script)
        app.router.add_get("/_stats", self._stats)
        app.router.add_post("/{channel}", self._receive)
        return app

    async def _set_script(self, request: web.Request) -> web.Response:
        modes = (await request.json())["modes"]
        if any(mode not in MODES for mode in modes):
            return web.json_response({"error": f"modes are {MODES}"}, status=400)
        self.script.extend(modes)
        return web.json_response({"queued": len(self.script)})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response({"requests": dict(self.requests), "delivered": self.delivered})

    async def _receive(self, request: web.Request) -> web.StreamResponse:
        key = request.headers.get("Idempotency-Key", "")
        self.requests[key] += 1
        mode = self.script.popleft() if self.script else "ok"
        if mode == "hang":
            await asyncio.sleep(3600)
        if mode == "drop":
            assert request.transport is not None
            request.transport.close()
            raise web.HTTPServiceUnavailable
        if mode == "429":
            return web.json_response(
                {"error": "slow down"}, status=429, headers={"Retry-After": "1"}
            )
        if mode in ("500", "400"):
            return web.json_response({"error": mode}, status=int(mode))
        body = orjson.loads(await request.read())
        if key and key not in self.delivered:
            self.delivered[key] = {"channel": request.match_info["channel"], "body": body}
            if self.print_deliveries:
                print(
                    f"delivered {request.match_info['channel']:<8} {key} {_summary(body)}",
                    flush=True,
                )
        return web.json_response({"id": key, "status": "accepted"})


def _summary(body: dict[str, Any]) -> str:
    subject = body.get("subject") or body.get("title") or ""
    if "personalizations" in body:
        to = ", ".join(t["email"] for p in body["personalizations"] for t in p["to"])
    else:
        to = body.get("to") or body.get("user_id")
    return f"to={to} {subject!r}"


async def serve(stub: ProviderStub, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(stub.app())
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
