"""The fleet at a glance: one pass over node summaries, jobs and open incidents.

Shared by the ``fleet_health`` tool and the ``fleet://summary`` resource. It must stay cheap on a
12,000-GPU fleet: it reads summaries (no per-GPU views) and counts.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from contracts.tools import NodeSummary
from events.incident import IncidentStatus
from mcp_server.deps import ServerDeps

OPEN_STATUSES: list[IncidentStatus] = ["open", "mitigating", "awaiting_approval", "escalated"]
MAX_ATTENTION = 10

HealthStatus = Literal["healthy", "degraded", "critical"]


class NodeCounts(BaseModel):
    total: int
    ready: int = Field(description="ready and schedulable")
    not_ready: int
    cordoned: int
    with_gpu_problems: int = Field(description="a GPU lost, in error or isolated")
    spares: int = Field(description="warm spares in the pool")
    spares_fit: int = Field(description="spares that could take a gang member now")


class GpuCounts(BaseModel):
    total: int
    healthy: int
    unhealthy: int = Field(description="fallen off the bus or in error")
    isolated: int


class FleetHealth(BaseModel):
    cluster: str
    backend: str
    status: HealthStatus
    headline: str = Field(description="one line for a human")
    nodes: NodeCounts
    gpus: GpuCounts
    jobs: dict[str, int] = Field(description="training jobs by state")
    gpu_hours_lost: float = Field(description="across the jobs, since they started")
    isolations_last_hour: int
    max_isolations_per_hour: int = Field(description="the blast-radius limit")
    open_incidents: int
    open_incidents_by_severity: dict[str, int]
    attention: list[str] = Field(description="what to look at first, most urgent first (up to 10)")


def _fit(node: NodeSummary) -> bool:
    return (
        node.state == "ready"
        and not node.cordoned
        and node.gpus_healthy == node.gpus_total
        and node.gpus_isolated == 0
    )


async def fleet_health_of(deps: ServerDeps) -> FleetHealth:
    backend = deps.backend
    nodes = await backend.node_summaries()
    jobs = await backend.list_jobs()
    context = await backend.fleet_context()
    incidents = await deps.incidents.list_incidents(OPEN_STATUSES, 500)

    problem_nodes = [n for n in nodes if n.gpus_healthy < n.gpus_total or n.gpus_isolated]
    node_counts = NodeCounts(
        total=len(nodes),
        ready=sum(1 for n in nodes if n.state == "ready" and not n.cordoned),
        not_ready=sum(1 for n in nodes if n.state != "ready"),
        cordoned=sum(1 for n in nodes if n.cordoned),
        with_gpu_problems=len(problem_nodes),
        spares=sum(1 for n in nodes if n.spare),
        spares_fit=sum(1 for n in nodes if n.spare and _fit(n)),
    )
    total_gpus = sum(n.gpus_total for n in nodes)
    healthy = sum(n.gpus_healthy for n in nodes)
    gpu_counts = GpuCounts(
        total=total_gpus,
        healthy=healthy,
        unhealthy=total_gpus - healthy,
        isolated=sum(n.gpus_isolated for n in nodes),
    )
    by_state: dict[str, int] = {}
    for job in jobs:
        by_state[job.state] = by_state.get(job.state, 0) + 1
    severity: dict[str, int] = {}
    for incident in incidents:
        severity[incident.severity] = severity.get(incident.severity, 0) + 1

    attention: list[str] = []
    for incident in incidents:
        if incident.severity == "critical" or incident.status == "awaiting_approval":
            attention.append(f"incident {incident.id} ({incident.status}): {incident.title or incident.kind}")
    for job in jobs:
        if job.state in ("stalled", "failed", "pending"):
            attention.append(f"job {job.name} is {job.state} ({job.gpus} GPUs idle)")
    for node in sorted(problem_nodes, key=lambda n: (n.gpus_healthy - n.gpus_total, n.name)):
        lost = node.gpus_total - node.gpus_healthy
        attention.append(
            f"node {node.name}: {lost} GPU(s) unhealthy, {node.gpus_isolated} isolated"
            + (f", cordoned by {node.cordon_owner}" if node.cordoned else "")
        )
    if node_counts.spares and not node_counts.spares_fit:
        attention.append("no warm spare is fit to take a failed node")

    stuck = sum(by_state.get(s, 0) for s in ("stalled", "failed"))
    if stuck or severity.get("critical"):
        status: HealthStatus = "critical"
    elif gpu_counts.unhealthy or node_counts.not_ready or node_counts.cordoned or incidents:
        status = "degraded"
    else:
        status = "healthy"
    headline = (
        f"{status.upper()}: {healthy}/{total_gpus} GPUs healthy, {gpu_counts.isolated} isolated; "
        f"{by_state.get('running', 0)}/{len(jobs)} jobs running"
        + (f", {stuck} stalled or failed" if stuck else "")
        + f"; {len(incidents)} open incident(s); {node_counts.spares_fit} spare(s) fit"
    )
    return FleetHealth(
        cluster=backend.cluster,
        backend=backend.kind,
        status=status,
        headline=headline,
        nodes=node_counts,
        gpus=gpu_counts,
        jobs=by_state,
        gpu_hours_lost=round(sum(j.gpu_hours_lost for j in jobs), 2),
        isolations_last_hour=context.isolations_last_hour,
        max_isolations_per_hour=deps.limits.max_isolations_per_hour,
        open_incidents=len(incidents),
        open_incidents_by_severity=severity,
        attention=attention[:MAX_ATTENTION],
    )
