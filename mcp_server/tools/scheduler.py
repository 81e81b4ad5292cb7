"""Scheduler tools: training jobs, their gangs and their checkpoints."""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server import MCPServer
from mcp.server.mcpserver import Context, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from contracts.tools import (
    ActionOutcome,
    CheckpointStatus,
    JobForGpu,
    JobProgress,
    JobView,
    NodeSummary,
)
from mcp_server.backends.base import BackendError
from mcp_server.gate.confirm import Answer, Confirmed, ask, require_confirmation
from mcp_server.gate.policy import Resource
from mcp_server.tools._common import READ_ONLY, deps_of, guard_of, mutating, readable
from mcp_server.tools.advice import CheckpointAdviceView, checkpoint_advice_of
from mcp_server.tools.cluster import parse_cursor
from mcp_server.tools.progress import run_with_progress

JobFilter = Literal["any", "running", "stalled", "restarting", "pending", "failed", "completed", "unhealthy"]


class JobPage(BaseModel):
    jobs: list[JobView]
    total: int = Field(description="jobs matching the filters, over all pages")
    next_cursor: str | None = Field(default=None, description="pass as `cursor` for the next page")


class GangMember(BaseModel):
    node: str
    state: str
    cordoned: bool
    gpus_healthy: int
    gpus_isolated: int
    gpus_total: int
    fit: bool = Field(description="ready, uncordoned, every GPU healthy and in service")


class JobDetail(BaseModel):
    """One job in full: placement, progress against its baseline, checkpoint, gang health."""

    job: JobView
    progress: JobProgress | None = Field(description="step time against the baseline; null if unknown")
    checkpoint: CheckpointStatus
    gang: list[GangMember] = Field(description="the job's nodes in rank order, with their health")
    unfit_members: list[str] = Field(description="gang nodes that could not run the job now")
    checkpoint_advice: CheckpointAdviceView | None = Field(
        default=None, description="the checkpoint_advice tool's answer with its defaults; null: see the note"
    )
    checkpoint_advice_note: str | None = Field(default=None, description="why there is no advice")


def _member(node: NodeSummary) -> GangMember:
    fit = (
        node.state == "ready"
        and not node.cordoned
        and node.gpus_healthy == node.gpus_total
        and node.gpus_isolated == 0
    )
    return GangMember(
        node=node.name,
        state=node.state,
        cordoned=node.cordoned,
        gpus_healthy=node.gpus_healthy,
        gpus_isolated=node.gpus_isolated,
        gpus_total=node.gpus_total,
        fit=fit,
    )


async def _confirm_restart(ctx: Context, job: str, reason: str, dry_run: bool) -> Answer:
    return await ask(
        ctx, "restart_from_checkpoint", f"job {job}", reason, dry_run, Resource(type="Job", id=job)
    )


async def list_jobs(
    ctx: Context,
    state: Annotated[
        JobFilter, Field(description="which jobs; 'unhealthy' = stalled, restarting, pending or failed")
    ] = "any",
    node: Annotated[str | None, Field(description="only jobs whose gang includes this node")] = None,
    limit: Annotated[int, Field(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Field(description="next_cursor of the previous page")] = None,
) -> JobPage:
    """List training jobs: state, gang of nodes, GPUs, step, step time, last checkpoint,
    restarts and GPU-hours lost. Filter by state or by a node of the gang; paged."""
    deps = deps_of(ctx)
    backend = deps.backend
    offset = parse_cursor(cursor)
    jobs = await readable(backend.list_jobs())
    if node is not None:
        await readable(backend.get_node(node))  # an unknown node is an error, not an empty list
        jobs = [j for j in jobs if node in j.nodes]
    if state == "unhealthy":
        jobs = [j for j in jobs if j.state in ("stalled", "restarting", "pending", "failed")]
    elif state != "any":
        jobs = [j for j in jobs if j.state == state]
    more = offset + limit < len(jobs)
    return JobPage(
        jobs=jobs[offset : offset + limit],
        total=len(jobs),
        next_cursor=str(offset + limit) if more else None,
    )


async def describe_job(ctx: Context, job: Annotated[str, Field(description="job name")]) -> JobDetail:
    """Everything about one training job: its gang in rank order with each node's health (and
    which members are unfit to run it), progress against its baseline step time, its
    checkpoint (age and the GPU-hours a restart now would discard), and the checkpoint interval
    the fleet's failure rate calls for (`checkpoint_advice`)."""
    deps = deps_of(ctx)
    backend = deps.backend
    view = await readable(backend.get_job(job))
    checkpoint = await readable(backend.checkpoint_status(job))
    try:
        progress: JobProgress | None = await backend.job_progress(job)
    except BackendError:
        progress = None  # a backend that cannot measure it (no baseline known)
    members = {n.name: n for n in await readable(backend.node_summaries())}
    gang = [_member(members[name]) for name in view.nodes if name in members]
    advice: CheckpointAdviceView | None = None
    note: str | None = None
    try:
        advice = await checkpoint_advice_of(deps, view)
    except ToolError as exc:
        note = str(exc)
    return JobDetail(
        job=view,
        progress=progress,
        checkpoint=checkpoint,
        gang=gang,
        unfit_members=[m.node for m in gang if not m.fit],
        checkpoint_advice=advice,
        checkpoint_advice_note=note,
    )


async def job_for_gpu(
    ctx: Context,
    node: Annotated[str, Field(description="node name")],
    gpu: Annotated[int, Field(ge=0, le=15, description="GPU index on the node")],
) -> JobForGpu:
    """Which training job uses this GPU (null when the GPU is idle), with the job's state,
    gang of nodes, step and last checkpoint."""
    deps = deps_of(ctx)
    backend = deps.backend
    await readable(backend.get_node(node))
    job = await readable(backend.job_for_gpu(node, gpu))
    return JobForGpu(node=node, gpu=gpu, job=job)


async def checkpoint_status(
    ctx: Context, job: Annotated[str, Field(description="job name")]
) -> CheckpointStatus:
    """The job's last checkpoint: when, at which step, how old, and how many GPU-hours of
    progress a restart from it would discard right now (`gpu_hours_at_risk`)."""
    deps = deps_of(ctx)
    backend = deps.backend
    return await readable(backend.checkpoint_status(job))


async def restart_from_checkpoint(
    ctx: Context,
    job: Annotated[str, Field(description="job name")],
    reason: Annotated[str, Field(min_length=3, max_length=500, description="why, for the audit trail")],
    confirmation: Annotated[Confirmed, Resolve(_confirm_restart)],
    idempotency_key: Annotated[
        str | None,
        Field(max_length=200, description="repeat-safe key; without one, every call restarts the job"),
    ] = None,
    dry_run: Annotated[bool, Field(description="check policy and report, change nothing")] = False,
    at_or_before_step: Annotated[
        int | None,
        Field(
            ge=0,
            description="restore the newest kept checkpoint with step <= this (one written before a "
            "corruption began) instead of the last one; no such checkpoint is an error",
        ),
    ] = None,
) -> ActionOutcome:
    """Restart a training job from its last checkpoint, or with `at_or_before_step` from the
    newest kept checkpoint at or before that step (after silent data corruption: a checkpoint
    written since the corruption began holds it too; `checkpoint_status` lists those kept). The
    result says which step it resumes from (`resume_step`) and which newer checkpoints it
    discarded. Progress since the restored checkpoint is lost and the restart takes the job's
    restart overhead. The scheduler re-places the gang: nodes that lost a GPU or are cordoned are
    replaced by warm spares.

    Policy-checked. Not naturally idempotent: pass an `idempotency_key` when retrying. A person
    is asked to confirm first when their client supports it. A restart that replaces unfit
    members with spares answers to the spare reserve, as `swap_spare` does.
    """
    deps = deps_of(ctx)
    guard = guard_of(ctx)
    backend = deps.backend
    view = await readable(backend.get_job(job))
    arguments: dict[str, object] = {"job": job, "reason": reason, "idempotency_key": idempotency_key}
    if at_or_before_step is not None:
        arguments["at_or_before_step"] = at_or_before_step
    await require_confirmation(confirmation, deps, "restart_from_checkpoint", arguments)
    resource = Resource(type="Job", id=job, attrs={"gpus": view.gpus})
    members = {n.name: n for n in await readable(backend.node_summaries())}
    # The scheduler replaces unfit members with warm spares: such a restart consumes spares.
    unfit = [name for name in view.nodes if name not in members or not _member(members[name]).fit]
    return await run_with_progress(
        ctx,
        guard,
        context={"takes_spare": bool(unfit)},
        action="restart_from_checkpoint",
        target=job,
        resource=resource,
        arguments=arguments,
        idempotency_key=idempotency_key,
        dry_run=dry_run,
        perform=lambda: backend.restart_from_checkpoint(job, reason, deps.identity().id, at_or_before_step),
    )


def register(server: MCPServer) -> None:
    server.add_tool(list_jobs, annotations=READ_ONLY)
    server.add_tool(describe_job, annotations=READ_ONLY)
    server.add_tool(job_for_gpu, annotations=READ_ONLY)
    server.add_tool(checkpoint_status, annotations=READ_ONLY)
    server.add_tool(restart_from_checkpoint, annotations=mutating(destructive=True, idempotent=False))
