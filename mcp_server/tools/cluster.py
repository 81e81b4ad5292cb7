"""Cluster tools: nodes and GPUs."""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from mcp_server.deps import ServerDeps
from mcp_server.guard import MutationGuard
from mcp_server.models import ActionOutcome, NodeDetail, NodePage, NodeSummary
from mcp_server.policy import Resource
from mcp_server.tools._common import READ_ONLY, mutating, readable

NodeFilter = Literal["any", "ready", "not_ready", "cordoned", "unhealthy", "spare"]


def _summary(node: NodeDetail) -> NodeSummary:
    return NodeSummary.model_validate(node.model_dump(exclude={"gpus"}))


def _matches(
    node: NodeDetail, state: NodeFilter, rack: str | None, leaf: str | None, label: str | None
) -> bool:
    if rack and node.rack != rack:
        return False
    if leaf and node.leaf_switch != leaf:
        return False
    if label:
        key, _, value = label.partition("=")
        if key not in node.labels or (value and node.labels[key] != value):
            return False
    match state:
        case "any":
            return True
        case "ready":
            return node.state == "ready" and not node.cordoned
        case "not_ready":
            return node.state != "ready"
        case "cordoned":
            return node.cordoned
        case "unhealthy":
            return node.gpus_healthy < node.gpus_total or node.gpus_isolated > 0
        case "spare":
            return node.spare


def register(server: MCPServer, deps: ServerDeps, guard: MutationGuard) -> None:
    backend = deps.backend

    @server.tool(annotations=READ_ONLY)
    async def list_nodes(
        state: Annotated[NodeFilter, Field(description="which nodes to list")] = "any",
        rack: Annotated[str | None, Field(description="only nodes in this rack")] = None,
        leaf_switch: Annotated[str | None, Field(description="only nodes under this InfiniBand leaf")] = None,
        label: Annotated[
            str | None, Field(description="only nodes with this label, 'key' or 'key=value'")
        ] = None,
        limit: Annotated[int, Field(ge=1, le=500)] = 100,
        cursor: Annotated[str | None, Field(description="next_cursor of the previous page")] = None,
    ) -> NodePage:
        """List GPU nodes with their health at a glance (GPUs healthy/isolated, cordon, jobs).

        Filter by state ('unhealthy' = a GPU lost, in error or isolated), rack, leaf switch or
        label; results are paged — pass `next_cursor` back as `cursor` for more.
        """
        try:
            offset = int(cursor) if cursor else 0
        except ValueError:
            offset = -1
        if offset < 0:
            raise ToolError(f"cursor {cursor!r} is not one this tool returned; omit it to start at the top")
        nodes = [
            n for n in await readable(backend.list_nodes()) if _matches(n, state, rack, leaf_switch, label)
        ]
        page = nodes[offset : offset + limit]
        more = offset + limit < len(nodes)
        return NodePage(
            nodes=[_summary(n) for n in page],
            total=len(nodes),
            next_cursor=str(offset + limit) if more else None,
        )

    @server.tool(annotations=READ_ONLY)
    async def describe_node(
        node: Annotated[str, Field(description="node name, e.g. node-003")],
    ) -> NodeDetail:
        """Everything about one node: state, rack, leaf switch, cordon owner, jobs, and each GPU
        (index, UUID, PCI bus id, health, isolation, last Xid)."""
        return await readable(backend.get_node(node))

    @server.tool(annotations=mutating(destructive=True))
    async def isolate_gpu(
        node: Annotated[str, Field(description="node that holds the GPU")],
        gpu: Annotated[int, Field(ge=0, le=15, description="GPU index on the node")],
        reason: Annotated[str, Field(min_length=3, max_length=500, description="why, for the audit trail")],
        idempotency_key: Annotated[
            str | None,
            Field(max_length=200, description="repeat-safe key; a repeat returns the first result"),
        ] = None,
        dry_run: Annotated[bool, Field(description="check policy and report, change nothing")] = False,
    ) -> ActionOutcome:
        """Take one GPU out of service so no new work is scheduled on it (the node stays up).

        Policy-checked (role, blast radius: isolations per hour). Isolating an already isolated GPU
        changes nothing. Running work on the GPU is not restarted by this tool.
        """
        target = f"{node}/gpu{gpu}"
        detail = await readable(backend.get_node(node))
        if not any(g.index == gpu for g in detail.gpus):
            raise ToolError(
                f"node {node} has no GPU {gpu} (GPUs: {', '.join(str(g.index) for g in detail.gpus)})"
            )
        resource = Resource(type="Gpu", id=target, attrs={"node": node, "index": gpu})
        return await guard.run(
            action="isolate_gpu",
            target=target,
            resource=resource,
            arguments={"node": node, "gpu": gpu, "reason": reason, "idempotency_key": idempotency_key},
            idempotency_key=idempotency_key,
            dry_run=dry_run,
            perform=lambda: backend.isolate_gpu(node, gpu, reason, deps.identity().id),
        )
