"""A self-contained MCP server: ``aiops mcp`` for MCP clients, with no NATS and no agents.

Against the fleet twin (default: its own, warmed up so jobs hold checkpoints and telemetry has a
history) or a real cluster (``AIOPS_BACKEND=kubernetes``, ``AIOPS_PROMETHEUS_URL``). Over stdio it
acts as one configured principal (``AIOPS_MCP_PRINCIPAL`` / ``AIOPS_MCP_ROLE``); over streamable
HTTP (``aiops mcp --http``) every request carries a bearer token that maps to a principal. Audit
and idempotency are in memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from mcp.server import MCPServer

from aiops.backends import Backends, build_backends
from aiops.build import build_server, http_tokens
from aiops.safety import policy_limits
from aiops.settings import Settings
from events.models import utcnow
from fleet import run_clock
from mcp_server.deps import ServerDeps
from mcp_server.gate.policy import PolicyGate, Principal
from mcp_server.identity import fixed_identity

WARMUP_S = 45 * 60
WARMUP_STEP_S = 60


def stdio_principal(settings: Settings) -> Principal:
    kind = "agent" if settings.mcp_role == "agent" else "person"
    return Principal(id=settings.mcp_principal, role=settings.mcp_role, kind=kind)


def _warm_up(backends: Backends) -> None:
    """Let the twin train a while, sampling as it goes: jobs hold a checkpoint, metrics a history."""
    if backends.twin is None:
        return
    for _ in range(WARMUP_S // WARMUP_STEP_S):
        backends.twin.advance(WARMUP_STEP_S)
        if backends.sampler is not None:
            backends.sampler.sample()


def _deps(settings: Settings, backends: Backends, *, confirm: bool) -> ServerDeps:
    return ServerDeps(
        backend=backends.cluster,
        telemetry=backends.telemetry,
        gate=PolicyGate.from_directory(),
        identity=fixed_identity(stdio_principal(settings)),  # build_server sets the caller
        limits=policy_limits(settings),
        confirm_destructive=confirm,
        read_only=settings.read_only,
        clock=backends.twin.now if backends.twin is not None else utcnow,
    )


def _lifespan(settings: Settings, backends: Backends, run_the_clock: bool) -> Any:
    @asynccontextmanager
    async def clock(_: MCPServer[Any]) -> AsyncIterator[None]:
        stop = asyncio.Event()
        tasks: list[asyncio.Task[Any]] = []
        if run_the_clock and backends.twin is not None:
            tasks.append(asyncio.create_task(run_clock(backends.twin, settings.speed, 0.5, stop)))
            tasks.append(asyncio.create_task(backends.run_sampler(stop)))
        try:
            yield None
        finally:
            stop.set()
            for task in tasks:
                await task

    return clock


def build_standalone_server(
    settings: Settings, *, run_the_clock: bool = True, confirm_destructive: bool = False
) -> MCPServer:
    """The stdio (or in-process) server, acting as the configured principal.

    ``confirm_destructive``: ask the person through elicitation before a destructive tool runs
    (``aiops mcp`` turns it on from ``AIOPS_CONFIRM_DESTRUCTIVE``; ``aiops slash`` leaves it off:
    the person typed the command)."""
    backends = build_backends(settings)
    _warm_up(backends)
    deps = _deps(settings, backends, confirm=confirm_destructive)
    return build_server(
        settings,
        deps,
        principal=stdio_principal(settings),
        lifespan=_lifespan(settings, backends, run_the_clock),
    )


@dataclass
class HttpServer:
    server: MCPServer
    generated_token: str | None
    """A token made up for this run when none is configured (role operator), to print once."""
    deps: ServerDeps


def build_standalone_http(settings: Settings, *, run_the_clock: bool = True) -> HttpServer:
    """The streamable-HTTP server: stateless (any replica answers any request) and token-guarded;
    serve it with ``aiops.build.serve_http``."""
    tokens = http_tokens(settings)
    backends = build_backends(settings)
    _warm_up(backends)
    deps = _deps(settings, backends, confirm=settings.confirm_destructive)
    server = build_server(
        settings, deps, tokens=tokens.bearer, lifespan=_lifespan(settings, backends, run_the_clock)
    )
    return HttpServer(server=server, generated_token=tokens.operator_token or None, deps=deps)
