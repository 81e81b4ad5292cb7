"""Incident tools: what the triage agents opened, diagnosed and did; runbooks on demand; on-call
bookkeeping (acknowledge, resolve)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from mcp.server import MCPServer
from mcp.server.mcpserver import Context, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from contracts.tools import ActionChange, ActionOutcome
from events.gpu_ref import GpuRef
from events.incident import Incident, IncidentStatus
from mcp_server.deps import ServerDeps
from mcp_server.gate.confirm import Answer, Confirmed, ask, confirmed_runbook, require_confirmation
from mcp_server.gate.policy import Resource
from mcp_server.self_client import ServerToolClient
from mcp_server.surface import GpuOpsServer
from mcp_server.tools._common import READ_ONLY, deps_of, guard_of, mutating
from mcp_server.tools.progress import ProgressRuns
from runbooks.engine import RunbookEngine, RunbookParamError
from runbooks.library import RunbookError
from runbooks.state import RunState

RunbookParams = dict[str, str | int | bool]


class IncidentBrief(BaseModel):
    id: str
    kind: str
    title: str
    severity: str
    status: IncidentStatus
    root_cause: str | None = Field(description="'<entity type>:<id>'")
    affected_nodes: list[str]
    affected_jobs: list[str]
    events: int
    opened_at: str
    updated_at: str
    gpu_hours_lost: float
    acknowledged_by: str | None = None


class IncidentList(BaseModel):
    incidents: list[IncidentBrief]


class StepView(BaseModel):
    id: str
    phase: str
    tool: str
    status: str
    mutating: bool
    arguments: dict[str, Any]
    decision: str | None = Field(description="the policy gate's answer for a mutating step")
    error: str | None = None


class RunbookRun(BaseModel):
    """A runbook run (or a dry run): each step with its tool, arguments and policy decision."""

    run_id: str
    runbook: str
    params: dict[str, Any]
    dry_run: bool
    status: str = Field(
        description="succeeded, failed, precondition_failed, denied (policy refused or needs approval), "
        "rolled_back, or dry_run (a plan: nothing changed)"
    )
    steps: list[StepView]
    error: str | None = None
    outcome: ActionOutcome | None = Field(
        default=None, description="run_runbook only: the policy decision on running the runbook at all"
    )


def brief(incident: Incident) -> IncidentBrief:
    rc = incident.root_cause
    return IncidentBrief(
        id=incident.id,
        kind=incident.kind,
        title=incident.title,
        severity=incident.severity,
        status=incident.status,
        root_cause=f"{rc.entity_type}:{rc.entity_id}" if rc else None,
        affected_nodes=incident.affected_nodes,
        affected_jobs=incident.affected_jobs,
        events=incident.event_count,
        opened_at=incident.opened_at.isoformat(),
        updated_at=incident.updated_at.isoformat(),
        gpu_hours_lost=round(incident.gpu_hours_lost, 3),
        acknowledged_by=incident.acknowledged_by,
    )


def run_view(state: RunState, outcome: ActionOutcome | None = None) -> RunbookRun:
    return RunbookRun(
        run_id=state.run_id,
        runbook=state.runbook,
        params=state.params,
        dry_run=state.dry_run,
        status=state.status,
        steps=[
            StepView(
                id=s.id,
                phase=s.phase,
                tool=s.tool,
                status=s.status,
                mutating=s.mutating,
                arguments=s.arguments,
                decision=s.decision,
                error=s.error,
            )
            for s in state.steps
        ],
        error=state.error,
        outcome=outcome,
    )


def runbook_resource(cluster: str, params: RunbookParams) -> Resource:
    """What a runbook acts on, for the policy gate: a GPU, a node, a job, or the cluster."""
    node, gpu, job = params.get("node"), params.get("gpu"), params.get("job")
    if isinstance(node, str) and isinstance(gpu, int) and not isinstance(gpu, bool):
        return Resource(type="Gpu", id=GpuRef(node, gpu).entity_id, attrs={"node": node, "index": gpu})
    if isinstance(node, str):
        return Resource(type="Node", id=node, attrs={"cluster": cluster})
    if isinstance(job, str):
        return Resource(type="Job", id=job)
    return Resource(type="Cluster", id=cluster)


async def _confirm_run(
    ctx: Context, runbook: str, params: RunbookParams, reason: str, dry_run: bool
) -> Answer:
    target = ", ".join(f"{k}={v}" for k, v in sorted(params.items())) or "the cluster"
    deps = ctx.mcp_server.deps if isinstance(ctx.mcp_server, GpuOpsServer) else None
    resource = runbook_resource(deps.backend.cluster, params) if deps is not None else None
    return await ask(ctx, "run_runbook", f"runbook {runbook} ({target})", reason, dry_run, resource)


async def known_incident(deps: ServerDeps, incident_id: str) -> Incident:
    found = await deps.incidents.get_incident(incident_id)
    if found is None:
        raise ToolError(f"no incident {incident_id!r}; list_incidents shows the known ones")
    return found


async def list_incidents(
    ctx: Context,
    status: Annotated[
        list[IncidentStatus] | None, Field(description="only these statuses; default: all")
    ] = None,
    limit: Annotated[int, Field(ge=1, le=500)] = 50,
) -> IncidentList:
    """Incidents newest first: kind, status, root cause, affected nodes and jobs, GPU-hours lost.
    Use `get_incident` for the plan, actions and timeline of one."""
    deps = deps_of(ctx)
    found = await deps.incidents.list_incidents(status, limit)
    return IncidentList(incidents=[brief(i) for i in found])


async def get_incident(
    ctx: Context, incident_id: Annotated[str, Field(description="incident id")]
) -> Incident:
    """One incident in full: root cause with evidence, grouped events, the plan and who made it,
    every action with its policy decision and result, and the timeline."""
    deps = deps_of(ctx)
    return await known_incident(deps, incident_id)


async def plan_runbook(
    ctx: Context,
    runbook: Annotated[str, Field(description="runbook name, e.g. isolate-gpu (resource runbook://index)")],
    params: Annotated[RunbookParams, Field(description="the runbook's parameters, e.g. {node, gpu}")],
) -> RunbookRun:
    """Dry-run a runbook: its read-only checks run for real, every mutating step is only
    checked against the policy gate (dry_run) and reported with the decision. Nothing changes.
    Use it before `run_runbook` to see what would happen and whether policy allows it."""
    deps = deps_of(ctx)
    server = ctx.mcp_server
    engine = RunbookEngine(ServerToolClient(server), deps.runs, deps.runbooks, clock=deps.clock)
    try:
        state = await engine.run(runbook, dict(params), run_id=f"plan-{uuid.uuid4().hex[:12]}", dry_run=True)
    except (RunbookError, RunbookParamError) as exc:
        raise ToolError(str(exc)) from exc
    return run_view(state)


async def run_runbook(
    ctx: Context,
    runbook: Annotated[str, Field(description="runbook name (resource runbook://index lists them)")],
    params: Annotated[RunbookParams, Field(description="the runbook's parameters")],
    reason: Annotated[str, Field(min_length=3, max_length=500, description="why, for the audit trail")],
    confirmation: Annotated[Confirmed, Resolve(_confirm_run)],
    idempotency_key: Annotated[
        str | None,
        Field(max_length=200, description="names the run: a repeat resumes or returns the same run"),
    ] = None,
    dry_run: Annotated[bool, Field(description="only plan it (as plan_runbook)")] = False,
) -> RunbookRun:
    """Run a runbook step by step as you: preconditions, steps, verification, rollback on
    failure. Running it at all is policy-checked, and so is every mutating step (with your
    role), each audited; a step the policy denies or wants approved stops the run ('denied').
    Every step state is persisted; the same `idempotency_key` resumes an interrupted run
    instead of repeating finished steps. A person is asked to confirm first when their client
    supports it."""
    deps = deps_of(ctx)
    guard = guard_of(ctx)
    server = ctx.mcp_server
    engine = RunbookEngine(
        ServerToolClient(server), ProgressRuns(deps.runs, ctx), deps.runbooks, clock=deps.clock
    )
    try:
        book = deps.runbooks.get(runbook)
    except RunbookError as exc:
        raise ToolError(str(exc)) from exc
    run_id = f"run-{idempotency_key}" if idempotency_key else f"run-{uuid.uuid4().hex[:12]}"
    arguments = {
        "runbook": runbook,
        "params": dict(params),
        "reason": reason,
        "idempotency_key": idempotency_key,
    }
    await require_confirmation(confirmation, deps, "run_runbook", arguments)
    finished: list[RunState] = []

    async def perform() -> ActionChange:
        with confirmed_runbook(run_id):
            try:
                state = await engine.run(
                    book.name, dict(params), run_id=run_id, context={"reason": reason}, dry_run=False
                )
            except RunbookParamError as exc:
                raise ToolError(str(exc)) from exc
        finished.append(state)
        done = sum(1 for s in state.steps if s.status == "done")
        return ActionChange(
            changed=any(s.mutating and s.status == "done" for s in state.steps),
            detail=f"runbook {book.name} {state.status}: {done}/{len(state.steps)} steps done"
            + (f"; {state.error}" if state.error else ""),
            data={"run_id": run_id, "status": state.status},
        )

    outcome = await guard.run(
        action="run_runbook",
        target=f"runbook {book.name}",
        resource=runbook_resource(deps.backend.cluster, params),
        arguments=arguments,
        idempotency_key=idempotency_key,
        dry_run=dry_run,
        perform=perform,
    )
    if finished:
        return run_view(finished[0], outcome)
    stored = await deps.runs.load(run_id)
    if stored is not None:  # a replayed call: the run it started
        return run_view(stored, outcome)
    # A dry run: plan it now that the policy allows running it.
    state = await engine.run(book.name, dict(params), run_id=f"plan-{uuid.uuid4().hex[:12]}", dry_run=True)
    return run_view(state, outcome)


async def acknowledge_incident(
    ctx: Context,
    incident_id: Annotated[str, Field(description="incident id")],
    note: Annotated[str | None, Field(max_length=500, description="a word for the timeline")] = None,
) -> ActionOutcome:
    """Take an incident as on call: your name goes on it and its timeline. Acknowledging an
    incident someone already holds changes nothing and says who holds it."""
    deps = deps_of(ctx)
    guard = guard_of(ctx)
    await known_incident(deps, incident_id)
    who = deps.identity().id

    async def perform() -> ActionChange:
        state: dict[str, str | None] = {}

        def acknowledge(incident: Incident) -> None:
            state["holder"] = incident.acknowledged_by
            if incident.acknowledged_by is None:
                incident.acknowledged_by, incident.acknowledged_at = who, deps.clock()
                incident.note("acknowledged", f"by {who}" + (f": {note}" if note else ""), at=deps.clock())

        await deps.incidents.update(incident_id, acknowledge)
        holder = state["holder"]
        if holder is not None:
            return ActionChange(
                changed=False,
                detail=f"{incident_id} is already acknowledged by {holder}; nothing changed",
                data={"acknowledged_by": holder},
            )
        return ActionChange(
            changed=True, detail=f"{incident_id} acknowledged by {who}", data={"acknowledged_by": who}
        )

    return await guard.run(
        action="acknowledge_incident",
        target=incident_id,
        resource=Resource(type="Cluster", id=deps.backend.cluster),
        arguments={"incident_id": incident_id, "note": note},
        idempotency_key=None,
        dry_run=False,
        perform=perform,
    )


async def resolve_incident(
    ctx: Context,
    incident_id: Annotated[str, Field(description="incident id")],
    resolution: Annotated[
        str, Field(min_length=3, max_length=1000, description="how it ended: cause found, fix applied")
    ],
) -> ActionOutcome:
    """Close an incident with its resolution, for the record and the postmortem. The agents
    stop working on a resolved incident. Resolving a resolved incident changes nothing."""
    deps = deps_of(ctx)
    guard = guard_of(ctx)
    await known_incident(deps, incident_id)
    who = deps.identity().id

    async def perform() -> ActionChange:
        before: dict[str, str] = {}

        def resolve(incident: Incident) -> None:
            before["status"] = incident.status
            if incident.status != "resolved":
                incident.status, incident.resolved_by, incident.resolution = "resolved", who, resolution
                incident.note("resolved", f"by {who}: {resolution}", at=deps.clock())

        await deps.incidents.update(incident_id, resolve)
        if before["status"] == "resolved":
            return ActionChange(changed=False, detail=f"{incident_id} is already resolved; nothing changed")
        return ActionChange(
            changed=True,
            detail=f"{incident_id} resolved by {who} (was {before['status']})",
            data={"previous_status": before["status"]},
        )

    return await guard.run(
        action="resolve_incident",
        target=incident_id,
        resource=Resource(type="Cluster", id=deps.backend.cluster),
        arguments={"incident_id": incident_id, "resolution": resolution},
        idempotency_key=None,
        dry_run=False,
        perform=perform,
    )


def register(server: MCPServer) -> None:
    server.add_tool(list_incidents, annotations=READ_ONLY)
    server.add_tool(get_incident, annotations=READ_ONLY)
    server.add_tool(plan_runbook, annotations=READ_ONLY)
    server.add_tool(run_runbook, annotations=mutating(destructive=True, idempotent=True))
    server.add_tool(acknowledge_incident, annotations=mutating(destructive=False))
    server.add_tool(resolve_incident, annotations=mutating(destructive=False))
