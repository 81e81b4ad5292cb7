"""A self-contained MCP server for stdio clients: its own fleet twin, in-memory audit and
idempotency, no NATS. It is what ``aiops mcp`` serves to Claude Desktop, Claude Code, Cursor or the
MCP Inspector when no platform is running."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from mcp.server import MCPServer

from aiops.settings import Settings
from fleet import FleetSpec, FleetTwin, run_clock
from mcp_server.backends.twin import TwinBackend
from mcp_server.deps import PolicyLimits, ServerDeps
from mcp_server.identity import fixed_identity
from mcp_server.policy import PolicyGate, Principal
from mcp_server.server import build_server

WARMUP_S = 45 * 60


def build_standalone_server(settings: Settings, *, run_the_clock: bool = True) -> MCPServer:
    twin = FleetTwin(FleetSpec.small(seed=settings.seed).model_copy(update={"cluster": settings.cluster}))
    twin.advance(WARMUP_S)  # jobs have trained a while and hold a checkpoint
    kind = "agent" if settings.mcp_role == "agent" else "person"
    principal = Principal(id=settings.mcp_principal, role=settings.mcp_role, kind=kind)
    deps = ServerDeps(
        backend=TwinBackend(twin),
        gate=PolicyGate.from_directory(),
        identity=fixed_identity(principal),
        limits=PolicyLimits(max_isolations_per_hour=settings.max_isolations_per_hour),
    )

    @asynccontextmanager
    async def clock(_: MCPServer[Any]) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(run_clock(twin, settings.speed, 0.5, stop)) if run_the_clock else None
        try:
            yield None
        finally:
            stop.set()
            if task is not None:
                await task

    return build_server(deps, lifespan=clock)
