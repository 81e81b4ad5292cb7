"""Cluster tools: nodes and GPUs."""

from __future__ import annotations

from typing import Annotated

from mcp.server import MCPServer
from mcp.server.mcpserver import Context, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from contracts.tools import ActionOutcome, GpuView, NodeDetail, NodeFilter, NodePage, NodeQuery
from events import dcgm_fields
from events.gpu_ref import GpuRef
from mcp_server.backends.base import BackendError
from mcp_server.gate.confirm import Answer, Confirmed, ask, require_confirmation
from mcp_server.gate.policy import Resource
from mcp_server.metrics import EccCounters, XidOccurrence
from mcp_server.tools._common import READ_ONLY, deps_of, guard_of, mutating, readable
from mcp_server.tools.progress import run_with_progress

GPU_STATUS_XID_WINDOW_S = 24 * 3600


class GpuStatus(BaseModel):
    """One GPU in full: inventory, health, isolation, the job on it, memory health, recent Xids."""

    node: str
    gpu: GpuView
    node_state: str
    node_cordoned: bool
    job: str | None = Field(description="the training job whose gang uses this GPU")
    job_state: str | None = None
    ecc: EccCounters | None = Field(description="ECC, retired pages, row remaps; null without telemetry")
    recent_xids: list[XidOccurrence] = Field(description="Xids of the last 24 hours, newest first (up to 10)")
    temperature_c: float | None = None
    power_w: float | None = None
    clock_event_reasons: int | None = Field(
        default=None,
        description="DCGM bitmask: 0x8 HW slowdown, 0x20 SW thermal, 0x40 HW thermal, 0x80 power brake",
    )
    telemetry_note: str | None = Field(default=None, description="why telemetry fields are missing")


def parse_cursor(cursor: str | None) -> int:
    """The offset a ``next_cursor`` of a paged listing encodes."""
    try:
        offset = int(cursor) if cursor else 0
    except ValueError:
        offset = -1
    if offset < 0:
        raise ToolError(f"cursor {cursor!r} is not one this tool returned; omit it to start at the top")
    return offset


def gpu_resource(node: str, gpu: int) -> Resource:
    return Resource(type="Gpu", id=GpuRef(node, gpu).entity_id, attrs={"node": node, "index": gpu})


async def _confirm_isolate(ctx: Context, node: str, gpu: int, reason: str, dry_run: bool) -> Answer:
    return await ask(ctx, "isolate_gpu", f"GPU {gpu} on {node}", reason, dry_run, gpu_resource(node, gpu))


async def list_nodes(
    ctx: Context,
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
    label; results are paged — pass `next_cursor` back as `cursor` for more. For one node's
    GPUs and labels use `describe_node`.
    """
    deps = deps_of(ctx)
    backend = deps.backend
    offset = parse_cursor(cursor)
    query = NodeQuery(state=state, rack=rack, leaf_switch=leaf_switch, label=label)
    nodes = await readable(backend.node_summaries(query))
    more = offset + limit < len(nodes)
    return NodePage(
        nodes=nodes[offset : offset + limit],
        total=len(nodes),
        next_cursor=str(offset + limit) if more else None,
    )


async def describe_node(
    ctx: Context,
    node: Annotated[str, Field(description="node name, e.g. node-003")],
) -> NodeDetail:
    """Everything about one node: state, rack, leaf switch, cordon owner, labels, jobs, and each
    GPU (index, UUID, PCI bus id, health, isolation, last Xid)."""
    deps = deps_of(ctx)
    backend = deps.backend
    return await readable(backend.get_node(node))


async def gpu_status(
    ctx: Context,
    node: Annotated[str, Field(description="node name")],
    gpu: Annotated[int, Field(ge=0, le=15, description="GPU index on the node")],
) -> GpuStatus:
    """One GPU in depth: health and isolation, the job on it, ECC / retired-page / row-remap
    counters with DCGM's verdict (ok, watch, reset_needed, replace), its Xids of the last 24
    hours, and temperature, power and clock-throttle reasons. Start here before acting on a GPU.
    """
    deps = deps_of(ctx)
    backend = deps.backend
    detail = await readable(backend.get_node(node))
    view = next((g for g in detail.gpus if g.index == gpu), None)
    if view is None:
        indexes = ", ".join(str(g.index) for g in detail.gpus)
        raise ToolError(f"node {node} has no GPU {gpu} (GPUs: {indexes})")
    job = await readable(backend.job_for_gpu(node, gpu))
    status = GpuStatus(
        node=node,
        gpu=view,
        node_state=detail.state,
        node_cordoned=detail.cordoned,
        job=job.name if job else None,
        job_state=job.state if job else None,
        ecc=None,
        recent_xids=[],
    )
    telemetry = deps.telemetry
    try:
        status.ecc = (await telemetry.ecc_counters(node, gpu))[0]
        status.recent_xids = (await telemetry.xid_history(node, gpu, GPU_STATUS_XID_WINDOW_S))[:10]
        fields = [dcgm_fields.GPU_TEMP, dcgm_fields.POWER_USAGE, dcgm_fields.CLOCKS_EVENT_REASONS]
        series = {s.field: s.last for s in await telemetry.gpu_metrics(node, [gpu], fields, 300, 60)}
    except BackendError as exc:
        status.telemetry_note = str(exc)
        return status
    status.temperature_c = series.get(dcgm_fields.GPU_TEMP)
    status.power_w = series.get(dcgm_fields.POWER_USAGE)
    reasons = series.get(dcgm_fields.CLOCKS_EVENT_REASONS)
    status.clock_event_reasons = int(reasons) if reasons is not None else None
    if view.health == "fallen_off_bus":
        status.telemetry_note = "the GPU fell off the bus: DCGM no longer reports it"
    return status


async def isolate_gpu(
    ctx: Context,
    node: Annotated[str, Field(description="node that holds the GPU")],
    gpu: Annotated[int, Field(ge=0, le=15, description="GPU index on the node")],
    reason: Annotated[str, Field(min_length=3, max_length=500, description="why, for the audit trail")],
    confirmation: Annotated[Confirmed, Resolve(_confirm_isolate)],
    idempotency_key: Annotated[
        str | None,
        Field(max_length=200, description="repeat-safe key; a repeat returns the first result"),
    ] = None,
    dry_run: Annotated[bool, Field(description="check policy and report, change nothing")] = False,
) -> ActionOutcome:
    """Take one GPU out of service so no new work is scheduled on it (the node stays up).

    Policy-checked (role, blast radius: isolations per hour). Isolating an already isolated GPU
    changes nothing. Running work on the GPU is not restarted by this tool. A person is asked
    to confirm first when their client supports it.
    """
    deps = deps_of(ctx)
    guard = guard_of(ctx)
    backend = deps.backend
    target = GpuRef(node, gpu).entity_id
    arguments = {"node": node, "gpu": gpu, "reason": reason, "idempotency_key": idempotency_key}
    detail = await readable(backend.get_node(node))
    if not any(g.index == gpu for g in detail.gpus):
        raise ToolError(
            f"node {node} has no GPU {gpu} (GPUs: {', '.join(str(g.index) for g in detail.gpus)})"
        )
    await require_confirmation(confirmation, deps, "isolate_gpu", arguments)
    return await run_with_progress(
        ctx,
        guard,
        action="isolate_gpu",
        target=target,
        resource=gpu_resource(node, gpu),
        arguments=arguments,
        idempotency_key=idempotency_key,
        dry_run=dry_run,
        perform=lambda: backend.isolate_gpu(node, gpu, reason, deps.identity().id),
    )


def register(server: MCPServer) -> None:
    server.add_tool(list_nodes, annotations=READ_ONLY)
    server.add_tool(describe_node, annotations=READ_ONLY)
    server.add_tool(gpu_status, annotations=READ_ONLY)
    server.add_tool(isolate_gpu, annotations=mutating(destructive=True))
