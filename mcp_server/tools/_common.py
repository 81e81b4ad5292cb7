"""Small helpers the tool modules share.

Tools are module-level functions; each reaches the server's dependencies through its ``ctx``
(``deps_of``, ``guard_of``), so one module's tools can be registered on any gpu-aiops server.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

from mcp_server.backends.base import BackendError
from mcp_server.deps import ServerDeps
from mcp_server.gate.guard import MutationGuard
from mcp_server.surface import GpuOpsServer

T = TypeVar("T")

READ_ONLY = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)


def mutating(*, destructive: bool, idempotent: bool = True) -> ToolAnnotations:
    return ToolAnnotations(
        read_only_hint=False, destructive_hint=destructive, idempotent_hint=idempotent, open_world_hint=False
    )


async def readable(call: Awaitable[T]) -> T:
    """Turn a backend's anticipated failure into a tool error the model can read."""
    try:
        return await call
    except BackendError as exc:
        raise ToolError(str(exc)) from exc


def deps_of(ctx: Context[Any, Any]) -> ServerDeps:
    """The dependencies of the server a tool call runs in."""
    server = ctx.mcp_server
    if not isinstance(server, GpuOpsServer) or server.deps is None:
        raise ToolError("this tool runs only in a gpu-aiops server")  # a wiring bug, not a caller's
    return server.deps


def guard_of(ctx: Context[Any, Any]) -> MutationGuard:
    """The one mutation path of the server a tool call runs in."""
    return MutationGuard(deps_of(ctx))
