"""Escalation tools: a hardware ticket with the evidence, and a page to the people on call.

Both are records (``mcp_server.escalation``): ``gpu.tickets.<cluster>``, ``gpu.pages.<cluster>``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from pydantic import Field

from contracts.tools import ActionChange, ActionOutcome
from events.models import stable_id
from mcp_server.escalation import Page, Ticket
from mcp_server.gate.policy import Resource
from mcp_server.tools._common import deps_of, guard_of, mutating

Key = Annotated[
    str | None, Field(max_length=200, description="repeat-safe key; a repeat returns the first result")
]
DryRun = Annotated[bool, Field(description="check policy and report, change nothing")]
IncidentId = Annotated[str | None, Field(max_length=200, description="the incident this belongs to")]


async def open_ticket(
    ctx: Context,
    node: Annotated[str, Field(description="the node with the broken part")],
    summary: Annotated[str, Field(min_length=3, max_length=500, description="what is broken")],
    evidence: Annotated[
        list[str], Field(max_length=50, description="kernel lines, counters, what was tried")
    ],
    gpu: Annotated[int | None, Field(ge=0, le=15, description="the GPU, when one is at fault")] = None,
    idempotency_key: Key = None,
    dry_run: DryRun = False,
    incident_id: IncidentId = None,
) -> ActionOutcome:
    """Open a hardware ticket (for the datacenter / vendor RMA process) with the evidence. The
    same ticket (node, GPU, summary, incident) is recorded once, however often it is asked for."""
    deps = deps_of(ctx)
    guard = guard_of(ctx)
    cluster = Resource(type="Cluster", id=deps.backend.cluster)
    ticket_id = "tkt-" + stable_id(deps.backend.cluster, incident_id, node, gpu, summary)[:12]

    async def perform() -> ActionChange:
        ticket = Ticket(
            id=ticket_id,
            cluster=deps.backend.cluster,
            node=node,
            gpu=gpu,
            summary=summary,
            evidence=evidence,
            incident_id=incident_id,
            opened_by=deps.identity().id,
        )
        new = await deps.desk.open_ticket(ticket)
        where = f"{node}" + (f" GPU {gpu}" if gpu is not None else "")
        detail = f"hardware ticket {ticket_id} for {where}: {summary}" + ("" if new else " (already open)")
        return ActionChange(changed=new, detail=detail, data={"ticket": ticket_id})

    return await guard.run(
        action="open_ticket",
        target=node,
        resource=cluster,
        arguments={
            "node": node,
            "gpu": gpu,
            "summary": summary,
            "evidence": evidence,
            "idempotency_key": idempotency_key,
        },
        idempotency_key=idempotency_key,
        dry_run=dry_run,
        incident_id=incident_id,
        perform=perform,
    )


async def page_oncall(
    ctx: Context,
    summary: Annotated[str, Field(min_length=3, max_length=500, description="what needs a person")],
    urgency: Annotated[Literal["low", "high"], Field(description="high wakes someone up")] = "high",
    ticket: Annotated[str | None, Field(description="a ticket id from open_ticket")] = None,
    idempotency_key: Key = None,
    dry_run: DryRun = False,
    incident_id: IncidentId = None,
) -> ActionOutcome:
    """Page the people on call. The same page (summary, ticket, incident) goes out once."""
    deps = deps_of(ctx)
    guard = guard_of(ctx)
    cluster = Resource(type="Cluster", id=deps.backend.cluster)
    page_id = "pg-" + stable_id(deps.backend.cluster, incident_id, ticket, summary)[:12]

    async def perform() -> ActionChange:
        page = Page(
            id=page_id,
            cluster=deps.backend.cluster,
            summary=summary,
            urgency=urgency,
            ticket=ticket,
            incident_id=incident_id,
            paged_by=deps.identity().id,
        )
        new = await deps.desk.page(page)
        detail = f"paged on-call ({urgency}): {summary}" + ("" if new else " (already paged)")
        return ActionChange(changed=new, detail=detail, data={"page": page_id, "ticket": ticket})

    return await guard.run(
        action="page_oncall",
        target=f"on-call/{deps.backend.cluster}",
        resource=cluster,
        arguments={
            "summary": summary,
            "urgency": urgency,
            "ticket": ticket,
            "idempotency_key": idempotency_key,
        },
        idempotency_key=idempotency_key,
        dry_run=dry_run,
        incident_id=incident_id,
        perform=perform,
    )


def register(server: MCPServer) -> None:
    server.add_tool(open_ticket, annotations=mutating(destructive=False))
    server.add_tool(page_oncall, annotations=mutating(destructive=False))
