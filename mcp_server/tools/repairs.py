"""Repair tools: the deferred repairs the triage agents queued and ran (read-only)."""

from __future__ import annotations

from typing import Annotated

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from pydantic import Field

from contracts.tools import RepairList
from mcp_server.tools._common import READ_ONLY, deps_of


async def list_repairs(
    ctx: Context,
    node: Annotated[str | None, Field(description="only this node's repair")] = None,
    active_only: Annotated[bool, Field(description="only repairs queued or under way")] = False,
) -> RepairList:
    """Deferred repairs, oldest first: the GPU reset or node reboot a plan queued for when the node
    is idle (reset, then reboot, then a ticket, as NVIDIA's Xid catalog says), its status (queued and
    what it waits for, running, returned to service or to the spare pool, escalated, refused,
    failed, dry_run), the runbook runs with their outcome, the incidents that asked for it, and its
    history. Read-only: the agents run repairs through the same gated tools as everything else."""
    deps = deps_of(ctx)
    return RepairList(repairs=await deps.repairs.list_repairs(node, active_only))


def register(server: MCPServer) -> None:
    server.add_tool(list_repairs, annotations=READ_ONLY)
