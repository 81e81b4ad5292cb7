"""Scheduler tools: training jobs and their checkpoints."""

from __future__ import annotations

from typing import Annotated

from mcp.server import MCPServer
from pydantic import Field

from mcp_server.deps import ServerDeps
from mcp_server.guard import MutationGuard
from mcp_server.models import ActionOutcome, CheckpointStatus, JobForGpu
from mcp_server.policy import Resource
from mcp_server.tools._common import READ_ONLY, mutating, readable


def register(server: MCPServer, deps: ServerDeps, guard: MutationGuard) -> None:
    backend = deps.backend

    @server.tool(annotations=READ_ONLY)
    async def job_for_gpu(
        node: Annotated[str, Field(description="node name")],
        gpu: Annotated[int, Field(ge=0, le=15, description="GPU index on the node")],
    ) -> JobForGpu:
        """Which training job uses this GPU (null when the GPU is idle), with the job's state,
        gang of nodes, step and last checkpoint."""
        await readable(backend.get_node(node))
        job = await readable(backend.job_for_gpu(node, gpu))
        return JobForGpu(node=node, gpu=gpu, job=job)

    @server.tool(annotations=READ_ONLY)
    async def checkpoint_status(job: Annotated[str, Field(description="job name")]) -> CheckpointStatus:
        """The job's last checkpoint: when, at which step, how old, and how many GPU-hours of
        progress a restart from it would discard right now (`gpu_hours_at_risk`)."""
        return await readable(backend.checkpoint_status(job))

    @server.tool(annotations=mutating(destructive=True, idempotent=False))
    async def restart_from_checkpoint(
        job: Annotated[str, Field(description="job name")],
        reason: Annotated[str, Field(min_length=3, max_length=500, description="why, for the audit trail")],
        idempotency_key: Annotated[
            str | None,
            Field(max_length=200, description="repeat-safe key; without one, every call restarts the job"),
        ] = None,
        dry_run: Annotated[bool, Field(description="check policy and report, change nothing")] = False,
    ) -> ActionOutcome:
        """Restart a training job from its last checkpoint. Progress since that checkpoint is lost
        (see `checkpoint_status`) and the restart takes the job's restart overhead. The scheduler
        re-places the gang: nodes that lost a GPU or are cordoned are replaced by warm spares.

        Policy-checked. Not naturally idempotent: pass an `idempotency_key` when retrying.
        """
        view = await readable(backend.get_job(job))
        resource = Resource(type="Job", id=job, attrs={"gpus": view.gpus})
        return await guard.run(
            action="restart_from_checkpoint",
            target=job,
            resource=resource,
            arguments={"job": job, "reason": reason, "idempotency_key": idempotency_key},
            idempotency_key=idempotency_key,
            dry_run=dry_run,
            perform=lambda: backend.restart_from_checkpoint(job, reason, deps.identity().id),
        )
