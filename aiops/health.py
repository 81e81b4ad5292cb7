"""``/healthz`` and ``/readyz`` on the platform's HTTP port, beside ``/mcp``.

- ``GET /healthz`` — live: the process answers and none of its long-running loops ended without
  being asked to (a crashed loop means restart the process). 200 or 503.
- ``GET /readyz`` — ready: connected to NATS, every stream and durable consumer of the platform
  answers (a stream without a leader does not), and no loop is stale (busy without a success for
  longer than its threshold). 200 or 503, with the problems listed.

Both are unauthenticated, like any orchestrator probe, so they say only what is needed to act:
loop names and states, stream and consumer names, error class names — never a payload, a token,
a node or an incident.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from events.liveness import Liveness
from events.streams import JetStreamLayout

CHECK_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class HealthRoute:
    path: str
    endpoint: Any


def liveness_report(liveness: Liveness) -> dict[str, Any]:
    loops = liveness.statuses()
    return {"live": liveness.live(), "loops": {s.name: s.state for s in loops}}


async def readiness_report(
    nc: NatsClient, js: JetStreamContext, liveness: Liveness, layout: JetStreamLayout
) -> dict[str, Any]:
    problems: list[str] = []
    if not nc.is_connected:
        problems.append("NATS: not connected")
    else:
        names = [c.name for c in layout.streams() if c.name] + [f"KV_{b.bucket}" for b in layout.buckets()]
        checks = [js.stream_info(name) for name in names]
        refs = sorted(liveness.consumers, key=lambda c: (c.stream, c.durable))
        checks += [js.consumer_info(c.stream, c.durable) for c in refs]
        labels = [f"stream {n}" for n in names] + [f"consumer {c.stream}/{c.durable}" for c in refs]
        results = await asyncio.gather(
            *(asyncio.wait_for(check, CHECK_TIMEOUT_S) for check in checks), return_exceptions=True
        )
        problems += [
            f"{label}: {type(r).__name__}"
            for label, r in zip(labels, results, strict=True)
            if isinstance(r, BaseException)
        ]
    for status in liveness.statuses():
        if status.stale:
            problems.append(f"loop {status.name}: no success for {status.seconds_since_ok or 0:.0f}s")
        elif status.state == "crashed":
            problems.append(f"loop {status.name}: crashed")
    loops = {
        s.name: {
            "state": s.state,
            "stale": s.stale,
            "seconds_since_ok": None if s.seconds_since_ok is None else round(s.seconds_since_ok, 1),
            "errors": s.errors_total,
        }
        for s in liveness.statuses()
    }
    return {"ready": not problems, "problems": problems, "loops": loops}


def health_routes(
    nc: NatsClient, js: JetStreamContext, liveness: Liveness, layout: JetStreamLayout
) -> list[HealthRoute]:
    async def healthz(request: Request) -> Response:
        report = liveness_report(liveness)
        return JSONResponse(report, status_code=200 if report["live"] else 503)

    async def readyz(request: Request) -> Response:
        report = await readiness_report(nc, js, liveness, layout)
        return JSONResponse(report, status_code=200 if report["ready"] else 503)

    return [HealthRoute("/healthz", healthz), HealthRoute("/readyz", readyz)]
