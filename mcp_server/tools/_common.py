"""Small helpers the tool modules share."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

from mcp_server.backends.base import BackendError

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
