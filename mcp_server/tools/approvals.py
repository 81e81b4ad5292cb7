"""Approval and safety tools: what waits for a person, approving or rejecting it, the circuit
breaker and the other switches (observe-only, change freeze) the policy weighs.

Approving, rejecting and resetting the breaker are a person's acts: they pass the policy gate
like any mutation (the agent and services may not; nobody approves their own request) and land in
the audit trail.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from contracts.tools import ActionChange, ActionOutcome, PolicyView
from events.models import utcnow
from mcp_server.backends.base import BackendError
from mcp_server.deps import ServerDeps
from mcp_server.gate.approvals import ApprovalError, ApprovalRequest, ApprovalStatus, expire_due
from mcp_server.gate.audit import audit
from mcp_server.gate.breaker import Backlog, BreakerState, share_pct
from mcp_server.gate.guard import MutationGuard
from mcp_server.gate.policy import Resource
from mcp_server.spare_reserve import reserve
from mcp_server.tools._common import READ_ONLY, deps_of, guard_of, mutating

Comment = Annotated[str, Field(max_length=500, description="why, for the record")]


class ApprovalList(BaseModel):
    approvals: list[ApprovalRequest] = Field(description="newest first")
    pending: int = Field(description="requests waiting for a person now")


class BreakerView(BaseModel):
    open: bool = Field(description="true: every new isolation is stopped until a person resets it")
    threshold_pct: int = Field(description="trips when more than this share of nodes is taken out")
    window_s: float
    taken_out: list[str] = Field(description="nodes taken out within the window (since the last reset)")
    taken_out_pct: int
    tripped_at: datetime | None = None
    trip_reason: str | None = None
    reset_by: str | None = None
    reset_at: datetime | None = None
    backlog: Backlog | None = Field(
        default=None, description="what the last reset decided for held incidents"
    )
    trips: int = 0
    resets: int = 0


class SafetyStatus(BaseModel):
    cluster: str
    observe_only: bool = Field(description="the platform plans and records but changes nothing")
    change_freeze: bool
    freeze_reason: str | None = None
    agent_requires_approval: bool
    breaker: BreakerView
    pending_approvals: int
    limits: dict[str, int | float] = Field(description="the numbers the policies compare against")


async def decide(
    deps: ServerDeps,
    guard: MutationGuard,
    approval_id: str,
    verdict: ApprovalStatus,
    comment: str,
) -> ActionOutcome:
    cluster = deps.backend.cluster
    resource = Resource(type="Cluster", id=cluster)
    who = deps.identity().id
    request = await deps.approvals.get(approval_id)
    if request is None:
        raise ToolError(f"no approval {approval_id!r}; list_approvals shows the pending ones")
    now = utcnow()

    async def perform() -> ActionChange:
        changed = False

        def apply(r: ApprovalRequest) -> None:
            nonlocal changed
            current = r.current_status(now)
            if current == verdict:
                return
            if current != "pending":
                raise ApprovalError(
                    f"approval {approval_id} is {current}"
                    + (f" (by {r.decided_by})" if r.decided_by else "")
                    + "; it cannot be decided again"
                )
            r.status, r.decided_by, r.decided_at, r.comment = verdict, who, now, comment
            changed = True

        try:
            after = await deps.approvals.update(approval_id, apply)
        except ApprovalError as exc:
            raise BackendError(str(exc)) from exc
        detail = (
            f"{verdict} {after.action} on {after.target} (approval {approval_id}, asked by {after.requested_by})"
            if changed
            else f"approval {approval_id} was already {verdict} by {after.decided_by}; nothing changed"
        )
        return ActionChange(
            changed=changed,
            detail=detail,
            data={"approval": approval_id, "status": after.status, "incident": after.incident_id},
        )

    return await guard.run(
        action="approve_action" if verdict == "approved" else "reject_action",
        target=approval_id,
        resource=resource,
        arguments={"approval_id": approval_id, "comment": comment},
        idempotency_key=None,
        dry_run=False,
        incident_id=request.incident_id,
        context={"own_request": request.requested_by == who},
        perform=perform,
    )


async def list_approvals(
    ctx: Context,
    status: Annotated[
        list[ApprovalStatus] | None, Field(description="only these statuses; default: pending")
    ] = None,
    limit: Annotated[int, Field(ge=1, le=500)] = 50,
) -> ApprovalList:
    """Actions waiting for (or decided by) a person: the tool, its target and exact arguments,
    who asked, why the policy wants a person (`reasons`), the fleet facts behind it
    (`evidence`), the incident, and when the request expires. Approve or reject one by id."""
    deps = deps_of(ctx)
    for request in await expire_due(deps.approvals):
        why = f"approval {request.id} for {request.action} on {request.target} expired unanswered at {request.expires_at:%Y-%m-%d %H:%M:%S} UTC"
        await audit(
            deps,
            deps.identity(),
            "expire_approval",
            {"approval_id": request.id, "action": request.action, "target": request.target},
            PolicyView(decision="deny", reasons=[why], policies=request.policies),
            ok=True,
            result=why,
        )
    wanted = status or ["pending"]
    found = await deps.approvals.list(wanted)
    pending = found if wanted == ["pending"] else await deps.approvals.list(["pending"])
    return ApprovalList(approvals=found[:limit], pending=len(pending))


async def approve_action(
    ctx: Context,
    approval_id: Annotated[str, Field(description="the id list_approvals shows, e.g. apr-1a2b3c4d5e")],
    comment: Comment = "",
) -> ActionOutcome:
    """Approve an action that waits for a person. The waiting caller (the triage agent resumes
    its parked runbook) then carries out exactly that call. Only people with the operator or
    admin role may approve, never the one who asked; an expired request cannot be approved."""
    deps = deps_of(ctx)
    guard = guard_of(ctx)
    return await decide(deps, guard, approval_id, "approved", comment)


async def reject_action(
    ctx: Context,
    approval_id: Annotated[str, Field(description="the id list_approvals shows")],
    comment: Comment = "",
) -> ActionOutcome:
    """Reject an action that waits for a person: it will not run (the agent abandons its parked
    runbook and hands the incident to people)."""
    deps = deps_of(ctx)
    guard = guard_of(ctx)
    return await decide(deps, guard, approval_id, "rejected", comment)


async def safety_status(ctx: Context) -> SafetyStatus:
    """The platform's safety switches: the circuit breaker (open or closed, which nodes were
    taken out within its window, why it tripped, who reset it), observe-only mode, a change
    freeze, whether the agent's actions need approval, pending approvals, and the limits."""
    deps = deps_of(ctx)
    cluster = deps.backend.cluster
    fleet = await deps.backend.fleet_context()
    limits = deps.limits
    state = await deps.breaker.load(cluster)
    freeze = next((w for w in limits.freeze_windows if w.covers(fleet.now)), None)
    return SafetyStatus(
        cluster=cluster,
        observe_only=limits.observe_only,
        change_freeze=freeze is not None,
        freeze_reason=(freeze.reason or "change freeze") if freeze else None,
        agent_requires_approval=limits.agent_requires_approval,
        breaker=breaker_view(deps, state, fleet.now, fleet.cluster_nodes),
        pending_approvals=len(await deps.approvals.list(["pending"])),
        limits={
            "max_isolations_per_hour": limits.max_isolations_per_hour,
            "max_out_of_service_pct": limits.max_out_of_service_pct,
            "min_spares": (await reserve(deps)).spares,
            "max_gpu_hours_at_risk": limits.max_gpu_hours_at_risk,
            "breaker_threshold_pct": limits.breaker_threshold_pct,
            "breaker_window_s": limits.breaker_window_s,
            "approval_ttl_s": limits.approval_ttl_s,
        },
    )


async def reset_breaker(
    ctx: Context,
    comment: Comment,
    backlog: Annotated[
        Backlog,
        Field(
            description="incidents the open breaker held: 'retry' re-plans them oldest first through "
            "the same gate (the breaker trips again if the storm goes on); 'escalate' leaves them "
            "with people"
        ),
    ] = "retry",
) -> ActionOutcome:
    """Close the circuit breaker after a person has looked at why it tripped. Isolations are
    allowed again and a new window starts: take-outs before the reset no longer count. Only
    people with the operator or admin role may reset it."""
    deps = deps_of(ctx)
    guard = guard_of(ctx)
    cluster = deps.backend.cluster
    resource = Resource(type="Cluster", id=cluster)
    who = deps.identity().id

    async def perform() -> ActionChange:
        now = (await deps.backend.fleet_context()).now
        was_open = False

        def reset(state: BreakerState) -> None:
            nonlocal was_open
            was_open = state.open
            if state.open:
                state.open, state.reset_by, state.reset_at = False, who, now
                state.reset_comment, state.backlog, state.window_started_at = comment, backlog, now
                state.takeouts = []  # a new window: earlier take-outs no longer count (the audit keeps them)
                state.resets += 1

        await deps.breaker.update(cluster, reset)
        if not was_open:
            return ActionChange(changed=False, detail="the circuit breaker is closed; nothing to reset")
        return ActionChange(
            changed=True,
            detail=f"circuit breaker reset by {who}; a new window starts now; held incidents: {backlog}",
            data={"backlog": backlog},
        )

    return await guard.run(
        action="reset_breaker",
        target=f"breaker/{cluster}",
        resource=resource,
        arguments={"comment": comment, "backlog": backlog},
        idempotency_key=None,
        dry_run=False,
        perform=perform,
    )


def register(server: MCPServer) -> None:
    server.add_tool(list_approvals, annotations=READ_ONLY)
    server.add_tool(approve_action, annotations=mutating(destructive=False))
    server.add_tool(reject_action, annotations=mutating(destructive=False))
    server.add_tool(safety_status, annotations=READ_ONLY)
    server.add_tool(reset_breaker, annotations=mutating(destructive=False))


def breaker_view(deps: ServerDeps, state: BreakerState, now: datetime, cluster_nodes: int) -> BreakerView:
    limits = deps.limits
    taken = state.nodes_taken_out(now, limits.breaker_window_s)
    return BreakerView(
        open=state.open,
        threshold_pct=limits.breaker_threshold_pct,
        window_s=limits.breaker_window_s,
        taken_out=taken,
        taken_out_pct=share_pct(len(taken), cluster_nodes),
        tripped_at=state.tripped_at,
        trip_reason=state.trip_reason,
        reset_by=state.reset_by,
        reset_at=state.reset_at,
        backlog=state.backlog,
        trips=state.trips,
        resets=state.resets,
    )
