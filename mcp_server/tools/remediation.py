"""Remediation tools: the spare pool, swapping a spare into a gang, drain, GPU reset, reboot, and
putting a repaired node back (restore its GPUs, lift the platform's cordon).

The destructive ones (swap, cordon, drain, reset, reboot) ask a person to confirm first, as
``isolate_gpu`` does (see ``mcp_server.gate.confirm``); putting capacity back asks nothing."""

from __future__ import annotations

from typing import Annotated

from mcp.server import MCPServer
from mcp.server.mcpserver import Context, Resolve
from pydantic import Field

from contracts.tools import ActionOutcome, JobProgress, ServiceStatus, SparePool
from events.gpu_ref import GpuRef
from mcp_server.deps import ServerDeps
from mcp_server.gate.confirm import Answer, Confirmed, ask, require_confirmation, server_deps
from mcp_server.gate.guard import MutationGuard, Perform
from mcp_server.gate.policy import Resource
from mcp_server.spare_reserve import reserve
from mcp_server.tools._common import READ_ONLY, deps_of, guard_of, mutating, readable
from mcp_server.tools.cluster import gpu_resource
from mcp_server.tools.progress import run_with_progress

Reason = Annotated[str, Field(min_length=3, max_length=500, description="why, for the audit trail")]
Key = Annotated[
    str | None, Field(max_length=200, description="repeat-safe key; a repeat returns the first result")
]
DryRun = Annotated[bool, Field(description="check policy and report, change nothing")]
IncidentId = Annotated[
    str | None,
    Field(max_length=200, description="the incident this action belongs to, for approvals and audit"),
]
NodeName = Annotated[str, Field(description="node name, e.g. node-003")]


async def _node_resource(deps: ServerDeps, node: str) -> Resource:
    backend = deps.backend
    view = await readable(backend.get_node(node))
    attrs: dict[str, str | int | bool | float] = {
        "cluster": backend.cluster,
        "rack": view.rack,
        "leaf": view.leaf_switch,
        "cordoned": view.cordoned,
    }
    if view.cordon_owner:
        attrs["cordon_owner"] = view.cordon_owner
    return Resource(type="Node", id=node, attrs=attrs)


# Confirmation resolvers (module-level: the tools' annotations name them). The gate pre-check in
# ``ask`` sees the same resource as the tool body.


async def _ask_on_node(ctx: Context, action: str, what: str, node: str, reason: str, dry_run: bool) -> Answer:
    deps = server_deps(ctx)
    resource = await _node_resource(deps, node) if deps is not None else None
    return await ask(ctx, action, f"{what} {node}", reason, dry_run, resource)


async def _confirm_cordon(ctx: Context, node: str, reason: str, dry_run: bool) -> Answer:
    return await _ask_on_node(ctx, "cordon_node", "cordon node", node, reason, dry_run)


async def _confirm_drain(ctx: Context, node: str, reason: str, dry_run: bool) -> Answer:
    return await _ask_on_node(ctx, "drain_node", "drain node", node, reason, dry_run)


async def _confirm_reboot(ctx: Context, node: str, reason: str, dry_run: bool) -> Answer:
    return await _ask_on_node(ctx, "reboot_node", "reboot node", node, reason, dry_run)


async def _confirm_reset(ctx: Context, node: str, gpu: int, reason: str, dry_run: bool) -> Answer:
    return await ask(ctx, "reset_gpu", f"GPU {gpu} on {node}", reason, dry_run, gpu_resource(node, gpu))


async def _confirm_swap(ctx: Context, job: str, node: str, reason: str, dry_run: bool) -> Answer:
    # No gate pre-check: the gate's context for a swap (does it take a spare?) is the tool's.
    return await ask(ctx, "swap_spare", f"{node} of job {job} (a spare takes its place)", reason, dry_run)


def actor(deps: ServerDeps) -> str:
    return deps.identity().id


async def on_node(
    ctx: Context,
    deps: ServerDeps,
    guard: MutationGuard,
    action: str,
    node: str,
    reason: str,
    idempotency_key: str | None,
    dry_run: bool,
    incident_id: str | None,
    perform: Perform,
    confirmation: Confirmed | None = None,
) -> ActionOutcome:
    """One node's mutation through the gate, once the person confirmed it (destructive ones)."""
    arguments = {"node": node, "reason": reason, "idempotency_key": idempotency_key}
    if confirmation is not None:
        await require_confirmation(confirmation, deps, action, arguments)
    return await run_with_progress(
        ctx,
        guard,
        action=action,
        target=node,
        resource=await _node_resource(deps, node),
        arguments=arguments,
        idempotency_key=idempotency_key,
        dry_run=dry_run,
        incident_id=incident_id,
        perform=perform,
    )


async def spare_pool(
    ctx: Context,
    job: Annotated[str | None, Field(description="with `node`: which spare a swap would take")] = None,
    node: Annotated[str | None, Field(description="the gang member a swap would replace")] = None,
) -> SparePool:
    """The warm spare pool: each spare node, whether it could take a gang member now, the
    reserve the operators keep (`minimum`), and how many spares a swap may take without a
    person's approval (`above_minimum`). With `job` and `node`, also the spare `swap_spare`
    would pick (same leaf switch first) and why."""
    deps = deps_of(ctx)
    backend = deps.backend
    pool = await readable(backend.spare_pool(job, node))
    held = await reserve(deps)
    pool.minimum = held.spares
    pool.above_minimum = max(0, pool.fit - held.spares)
    return pool


async def job_progress(ctx: Context, job: Annotated[str, Field(description="job name")]) -> JobProgress:
    """Whether a training job trains and at which speed: state, step, gang, its step time now
    against its baseline (`slowdown`), and `resumed` — running at its baseline step time, the
    check after a restart or a spare swap. While a restart runs, `resumes_at` says when it ends."""
    deps = deps_of(ctx)
    backend = deps.backend
    return await readable(backend.job_progress(job))


async def service_status(ctx: Context, node: NodeName) -> ServiceStatus:
    """Whether a node is in service and, if not, whether this platform may put it back:
    readiness, GPU health, isolated GPUs, who cordoned it (`cordoned_by_platform`), maintenance
    in progress (reset, reboot), and `can_return` with the reasons it cannot (`why_not`)."""
    deps = deps_of(ctx)
    backend = deps.backend
    return await readable(backend.service_status(node))


async def swap_spare(
    ctx: Context,
    job: Annotated[str, Field(description="the training job")],
    node: Annotated[str, Field(description="the failed gang member to replace")],
    reason: Reason,
    confirmation: Annotated[Confirmed, Resolve(_confirm_swap)],
    idempotency_key: Key = None,
    dry_run: DryRun = False,
    incident_id: IncidentId = None,
) -> ActionOutcome:
    """Replace a failed node in a job's gang with a warm spare (one on the same leaf switch if
    there is one; see `spare_pool`). The job does not move by itself: follow with
    `restart_from_checkpoint`. A running gang stops when a member is swapped.

    Policy-checked: a swap that dips into the spare reserve, or whose restart would discard
    more GPU-hours than the operators allow, waits for a person's approval. Swapping the same
    node twice changes nothing more. A person is asked to confirm first when their client
    supports it."""
    deps = deps_of(ctx)
    guard = guard_of(ctx)
    backend = deps.backend
    view = await readable(backend.get_job(job))
    arguments = {"job": job, "node": node, "reason": reason, "idempotency_key": idempotency_key}
    await require_confirmation(confirmation, deps, "swap_spare", arguments)
    return await run_with_progress(
        ctx,
        guard,
        context={"takes_spare": node in view.nodes},  # a node swapped out already takes none
        action="swap_spare",
        target=f"{job}/{node}",
        resource=Resource(type="Job", id=job, attrs={"gpus": view.gpus}),
        arguments=arguments,
        idempotency_key=idempotency_key,
        dry_run=dry_run,
        incident_id=incident_id,
        perform=lambda: backend.swap_spare(
            job,
            node,
            reason,
            actor(deps),
        ),
    )


async def cordon_node(
    ctx: Context,
    node: NodeName,
    reason: Reason,
    confirmation: Annotated[Confirmed, Resolve(_confirm_cordon)],
    idempotency_key: Key = None,
    dry_run: DryRun = False,
    incident_id: IncidentId = None,
) -> ActionOutcome:
    """Mark a node unschedulable (its running work keeps running). The cordon carries this
    platform as owner, so `uncordon_node` may lift it later. Counts against the blast radius
    and the circuit breaker. A person is asked to confirm first when their client supports it."""
    deps = deps_of(ctx)
    guard = guard_of(ctx)
    backend = deps.backend
    return await on_node(
        ctx,
        deps,
        guard,
        "cordon_node",
        node,
        reason,
        idempotency_key,
        dry_run,
        incident_id,
        lambda: backend.cordon_node(
            node,
            reason,
            actor(deps),
        ),
        confirmation,
    )


async def uncordon_node(
    ctx: Context,
    node: NodeName,
    reason: Reason,
    idempotency_key: Key = None,
    dry_run: DryRun = False,
    incident_id: IncidentId = None,
) -> ActionOutcome:
    """Make a node schedulable again — only when this platform cordoned it: a cordon another
    owner set (a hardware team, kubectl by hand) is refused. A repaired node that was swapped
    out of a gang rejoins the warm spare pool. Check `service_status` first."""
    deps = deps_of(ctx)
    guard = guard_of(ctx)
    backend = deps.backend
    return await on_node(
        ctx,
        deps,
        guard,
        "uncordon_node",
        node,
        reason,
        idempotency_key,
        dry_run,
        incident_id,
        lambda: backend.uncordon_node(
            node,
            reason,
            actor(deps),
        ),
    )


async def drain_node(
    ctx: Context,
    node: NodeName,
    reason: Reason,
    confirmation: Annotated[Confirmed, Resolve(_confirm_drain)],
    idempotency_key: Key = None,
    dry_run: DryRun = False,
    incident_id: IncidentId = None,
) -> ActionOutcome:
    """Cordon a node and evict its work: a training gang with a member on it stops and needs
    `restart_from_checkpoint` (which replaces that member with a spare). Needed before
    `reset_gpu` or `reboot_node`. Counts against the blast radius and the circuit breaker.
    A person is asked to confirm first when their client supports it."""
    deps = deps_of(ctx)
    guard = guard_of(ctx)
    backend = deps.backend
    return await on_node(
        ctx,
        deps,
        guard,
        "drain_node",
        node,
        reason,
        idempotency_key,
        dry_run,
        incident_id,
        lambda: backend.drain_node(
            node,
            reason,
            actor(deps),
        ),
        confirmation,
    )


async def reset_gpu(
    ctx: Context,
    node: NodeName,
    gpu: Annotated[int, Field(ge=0, le=15, description="GPU index on the node")],
    reason: Reason,
    confirmation: Annotated[Confirmed, Resolve(_confirm_reset)],
    idempotency_key: Key = None,
    dry_run: DryRun = False,
    incident_id: IncidentId = None,
) -> ActionOutcome:
    """Reset one GPU (tens of seconds; it clears ECC errors, applies pending row remaps). The
    node must be drained first; a GPU that fell off the bus cannot be reset — reboot the node.
    The reset finishes after the call returns: check `describe_node` for the GPU's health. A
    person is asked to confirm first when their client supports it."""
    deps = deps_of(ctx)
    guard = guard_of(ctx)
    backend = deps.backend
    arguments = {"node": node, "gpu": gpu, "reason": reason, "idempotency_key": idempotency_key}
    await require_confirmation(confirmation, deps, "reset_gpu", arguments)
    return await run_with_progress(
        ctx,
        guard,
        action="reset_gpu",
        target=GpuRef(node, gpu).entity_id,
        resource=gpu_resource(node, gpu),
        arguments=arguments,
        idempotency_key=idempotency_key,
        dry_run=dry_run,
        incident_id=incident_id,
        perform=lambda: backend.reset_gpu(
            node,
            gpu,
            reason,
            actor(deps),
        ),
    )


async def reboot_node(
    ctx: Context,
    node: NodeName,
    reason: Reason,
    confirmation: Annotated[Confirmed, Resolve(_confirm_reboot)],
    idempotency_key: Key = None,
    dry_run: DryRun = False,
    incident_id: IncidentId = None,
) -> ActionOutcome:
    """Reboot a node (several minutes; its GPUs come back unless the hardware is broken). The
    node must be drained first. The reboot finishes after the call returns: check
    `service_status`. Counts against the blast radius and the circuit breaker. A person is asked
    to confirm first when their client supports it."""
    deps = deps_of(ctx)
    guard = guard_of(ctx)
    backend = deps.backend
    return await on_node(
        ctx,
        deps,
        guard,
        "reboot_node",
        node,
        reason,
        idempotency_key,
        dry_run,
        incident_id,
        lambda: backend.reboot_node(
            node,
            reason,
            actor(deps),
        ),
        confirmation,
    )


async def restore_gpus(
    ctx: Context,
    node: NodeName,
    reason: Reason,
    idempotency_key: Key = None,
    dry_run: DryRun = False,
    incident_id: IncidentId = None,
) -> ActionOutcome:
    """Return the node's isolated GPUs that are healthy again to service (after a reset or a
    reboot); GPUs still unhealthy stay isolated."""
    deps = deps_of(ctx)
    guard = guard_of(ctx)
    backend = deps.backend
    return await on_node(
        ctx,
        deps,
        guard,
        "restore_gpus",
        node,
        reason,
        idempotency_key,
        dry_run,
        incident_id,
        lambda: backend.restore_gpus(
            node,
            reason,
            actor(deps),
        ),
    )


def register(server: MCPServer) -> None:
    server.add_tool(spare_pool, annotations=READ_ONLY)
    server.add_tool(job_progress, annotations=READ_ONLY)
    server.add_tool(service_status, annotations=READ_ONLY)
    server.add_tool(swap_spare, annotations=mutating(destructive=True, idempotent=True))
    server.add_tool(cordon_node, annotations=mutating(destructive=True))
    server.add_tool(uncordon_node, annotations=mutating(destructive=False))
    server.add_tool(drain_node, annotations=mutating(destructive=True))
    server.add_tool(reset_gpu, annotations=mutating(destructive=True, idempotent=False))
    server.add_tool(reboot_node, annotations=mutating(destructive=True, idempotent=False))
    server.add_tool(restore_gpus, annotations=mutating(destructive=False))
