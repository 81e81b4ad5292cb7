"""A loopback stand-in for Slack's side: response URLs and the Web API methods we call.

A real HTTP server on a free port (uvicorn), recording what it receives, answering in Slack's shapes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode

import uvicorn
from slack_sdk.signature import SignatureVerifier
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


@dataclass
class SlackSide:
    url: str = ""
    responses: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    _ts: int = 1_700_000_000

    async def _body(self, request: Request) -> dict[str, Any]:
        raw = await request.body()
        if request.headers.get("content-type", "").startswith("application/json"):
            return dict(json.loads(raw or b"{}"))
        return {k: v[0] for k, v in parse_qs(raw.decode()).items()}

    async def response_url(self, request: Request) -> JSONResponse:
        self.responses.append(await self._body(request))
        self.changed.set()
        return JSONResponse({"ok": True})

    async def api(self, request: Request) -> JSONResponse:
        method = request.path_params["method"]
        body = await self._body(request)
        self.calls.append((method, body))
        self.changed.set()
        if method == "chat.postMessage":
            self._ts += 1
            return JSONResponse(
                {"ok": True, "channel": body.get("channel", "C1"), "ts": f"{self._ts}.000100"}
            )
        if method == "chat.update":
            return JSONResponse({"ok": True, "channel": body.get("channel"), "ts": body.get("ts")})
        return JSONResponse({"ok": False, "error": "unknown_method"})

    async def wait_for(self, check: Any, within_s: float = 15.0) -> None:
        deadline = time.monotonic() + within_s
        while not check():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("timed out waiting for the Slack side")
            self.changed.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), timeout=remaining)


@asynccontextmanager
async def slack_side() -> AsyncIterator[SlackSide]:
    side = SlackSide()
    app = Starlette(
        routes=[
            Route("/response/{id}", side.response_url, methods=["POST"]),
            Route("/api/{method}", side.api, methods=["POST"]),
        ]
    )
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    side.url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    try:
        yield side
    finally:
        server.should_exit = True
        await task


def signed(secret: str, form: dict[str, str], *, age_s: int = 0) -> tuple[bytes, dict[str, str]]:
    """A form body and the headers Slack would send with it (``age_s`` back-dates the timestamp)."""
    body = urlencode(form).encode()
    ts = str(int(time.time()) - age_s)
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    return body, {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature or "",
        "Content-Type": "application/x-www-form-urlencoded",
    }
