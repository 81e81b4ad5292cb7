"""Tools for silent data corruption: stop a job to free its GPUs, run DCGM's active diagnostics on a
node, and read their verdict.

A GPU that computes wrong results shows no Xid and no ECC error; only the training numerics (a NaN
or a spike in the loss) and active diagnostics find it. ``dcgmi diag`` levels (NVIDIA's reference):
1 quick deployment checks (seconds), 2 medium (about 2 minutes), 3 long hardware diagnostics (about
15 minutes; the GEMM ``diagnostic`` plugin and ``targeted_stress`` catch wrong results), 4 extended.
Diagnostics take the whole GPU: they are refused while a running job holds it (``stop_job`` first).
"""

from __future__ import annotations

from typing import Annotated

from mcp.server import MCPServer
from mcp.server.mcpserver import Context, Resolve
from pydantic import Field

from contracts.tools import ActionOutcome, DiagnosticLevel, DiagnosticsReport
from mcp_server.gate.confirm import Answer, Confirmed, ask, require_confirmation
from mcp_server.gate.policy import Resource
from mcp_server.tools._common import READ_ONLY, deps_of, guard_of, mutating, readable
from mcp_server.tools.progress import run_with_progress
from mcp_server.tools.remediation import (
    DryRun,
    IncidentId,
    Key,
    NodeName,
    Reason,
    _node_resource,
    actor,
)


async def _confirm_stop(ctx: Context, job: str, reason: str, dry_run: bool) -> Answer:
    return await ask(ctx, "stop_job", f"job {job}", reason, dry_run, Resource(type="Job", id=job))


async def stop_job(
    ctx: Context,
    job: Annotated[str, Field(description="job name")],
    reason: Reason,
    confirmation: Annotated[Confirmed, Resolve(_confirm_stop)],
    idempotency_key: Key = None,
    dry_run: DryRun = False,
    incident_id: IncidentId = None,
) -> ActionOutcome:
    """Stop a running training job and keep its gang: its GPUs go idle (for `run_diagnostics`)
    and no corrupted checkpoint is written meanwhile. `restart_from_checkpoint` resumes it.
    Stopping a job that is not running changes nothing. A person is asked to confirm first when
    their client supports it."""
    deps = deps_of(ctx)
    guard = guard_of(ctx)
    backend = deps.backend
    view = await readable(backend.get_job(job))
    arguments = {"job": job, "reason": reason, "idempotency_key": idempotency_key}
    await require_confirmation(confirmation, deps, "stop_job", arguments)
    return await run_with_progress(
        ctx,
        guard,
        action="stop_job",
        target=job,
        resource=Resource(type="Job", id=job, attrs={"gpus": view.gpus}),
        arguments=arguments,
        idempotency_key=idempotency_key,
        dry_run=dry_run,
        incident_id=incident_id,
        perform=lambda: backend.stop_job(job, reason, actor(deps)),
    )


async def run_diagnostics(
    ctx: Context,
    node: NodeName,
    level: Annotated[
        DiagnosticLevel,
        Field(description="dcgmi diag -r: 1 seconds, 2 ~2 min, 3 ~15 min (catches wrong results), 4 longer"),
    ],
    reason: Reason,
    idempotency_key: Key = None,
    dry_run: DryRun = False,
    incident_id: IncidentId = None,
) -> ActionOutcome:
    """Start DCGM active diagnostics (`dcgmi diag -r <level>`) on every GPU of a node. Level 3 or
    more is needed to catch silent data corruption (wrong compute results); a GPU in error fails
    level 1. Refused while a running job holds the node's GPUs: `stop_job` first. The run takes
    its level's time and occupies the node; read the verdict with `diagnostics_report` once
    `finishes_at` has passed. A run still going is not started again."""
    deps = deps_of(ctx)
    guard = guard_of(ctx)
    backend = deps.backend
    arguments = {"node": node, "level": level, "reason": reason, "idempotency_key": idempotency_key}
    return await run_with_progress(
        ctx,
        guard,
        action="run_diagnostics",
        target=node,
        resource=await _node_resource(deps, node),
        arguments=arguments,
        idempotency_key=idempotency_key,
        dry_run=dry_run,
        incident_id=incident_id,
        perform=lambda: backend.run_diagnostics(node, level, reason, actor(deps)),
    )


async def diagnostics_report(ctx: Context, node: NodeName) -> DiagnosticsReport:
    """The latest DCGM diagnostics run on a node: `running` until it finishes, then `passed` or
    `failed` with each GPU's verdict and the DCGM plugins (tests) each failing GPU failed."""
    deps = deps_of(ctx)
    return await readable(deps.backend.diagnostics_report(node))


def register(server: MCPServer) -> None:
    server.add_tool(diagnostics_report, annotations=READ_ONLY)
    server.add_tool(stop_job, annotations=mutating(destructive=True))
    server.add_tool(run_diagnostics, annotations=mutating(destructive=False, idempotent=False))
