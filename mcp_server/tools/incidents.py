"""Incident tools: what the triage agents opened, diagnosed and did."""

from __future__ import annotations

from typing import Annotated

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from events.incident import Incident, IncidentStatus
from mcp_server.deps import ServerDeps
from mcp_server.tools._common import READ_ONLY


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


class IncidentList(BaseModel):
    incidents: list[IncidentBrief]


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
    )


def register(server: MCPServer, deps: ServerDeps) -> None:
    @server.tool(annotations=READ_ONLY)
    async def list_incidents(
        status: Annotated[
            list[IncidentStatus] | None, Field(description="only these statuses; default: all")
        ] = None,
        limit: Annotated[int, Field(ge=1, le=500)] = 50,
    ) -> IncidentList:
        """Incidents newest first: kind, status, root cause, affected nodes and jobs, GPU-hours lost.
        Use `get_incident` for the plan, actions and timeline of one."""
        found = await deps.incidents.list_incidents(status, limit)
        return IncidentList(incidents=[brief(i) for i in found])

    @server.tool(annotations=READ_ONLY)
    async def get_incident(incident_id: Annotated[str, Field(description="incident id")]) -> Incident:
        """One incident in full: root cause with evidence, grouped events, the plan and who made it,
        every action with its policy decision and result, and the timeline."""
        found = await deps.incidents.get_incident(incident_id)
        if found is None:
            raise ToolError(f"no incident {incident_id!r}; list_incidents shows the known ones")
        return found
