"""What the MCP server tests share: principals, an in-memory incident source, result helpers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from mcp import Client
from mcp.server import MCPServer
from mcp.types import CallToolResult, ElicitRequestParams, ElicitResult, TextContent

from contracts.refusal import Refusal, refusal_of
from events.incident import (
    ActionRecord,
    Incident,
    IncidentStatus,
    Plan,
    RootCause,
    RunbookInvocation,
    TimelineEntry,
)
from fleet import FleetTwin
from mcp_server.backends.twin.telemetry import TwinTelemetry
from mcp_server.deps import ServerDeps
from mcp_server.gate.audit import MemoryAudit
from mcp_server.gate.policy import Principal

OPERATOR = Principal(id="olga", role="operator", kind="person")
VIEWER = Principal(id="victor", role="viewer", kind="person")
AGENT = Principal(id="triage-agent", role="agent", kind="agent")
ADMIN = Principal(id="ada", role="admin", kind="person")

READ_TOOLS = {
    "list_nodes",
    "describe_node",
    "gpu_status",
    "list_jobs",
    "describe_job",
    "job_for_gpu",
    "checkpoint_status",
    "list_incidents",
    "get_incident",
    "plan_runbook",
    "fleet_health",
    "top_offenders",
    "gpu_metrics",
    "xid_history",
    "ecc_status",
    "job_throughput",
    "promql",
}
DESTRUCTIVE_TOOLS = {"isolate_gpu", "restart_from_checkpoint", "run_runbook"}
"""Mutating tools that take dry_run, an idempotency key and a reason, and ask a person to confirm."""
MUTATING_TOOLS = DESTRUCTIVE_TOOLS | {"acknowledge_incident", "resolve_incident"}
# Remediation, escalation, approvals and the breaker (issue 4: tools/remediation.py, escalation.py,
# approvals.py); their tests live in tests/mcp_server/test_remediation*.py.
READ_TOOLS |= {"spare_pool", "job_progress", "service_status", "list_approvals", "safety_status"}
READ_TOOLS |= {"spare_advice", "checkpoint_advice"}
READ_TOOLS |= {"fleet_map", "audit_log"}  # the heatmap's per-GPU states; the audit trail
READ_TOOLS |= {"list_repairs"}  # deferred repairs (agents/repairs.py)
READ_TOOLS |= {"diagnostics_report"}  # DCGM diagnostics (tools/diagnostics.py)
REMEDIATION_TOOLS = {
    "swap_spare",
    "cordon_node",
    "uncordon_node",
    "drain_node",
    "reset_gpu",
    "reboot_node",
    "restore_gpus",
    "stop_job",
    "run_diagnostics",
    "open_ticket",
    "page_oncall",
    "approve_action",
    "reject_action",
    "reset_breaker",
}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw-http-test", "version": "0"},
    },
}
"""A raw MCP ``initialize`` request, for the HTTP tests that post it themselves (authentication)."""
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}

TWIN_TOOLS = {"inject_fault"}  # the twin only (mcp_server/tools/twin_faults.py)
ALL_TOOLS = READ_TOOLS | MUTATING_TOOLS | REMEDIATION_TOOLS | TWIN_TOOLS


class SwitchableIdentity:
    """An identity resolver whose principal a test can change between calls."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal

    def __call__(self) -> Principal:
        return self.principal


@dataclass
class Stack:
    """One MCP server over a fleet twin, with the sinks a test inspects."""

    twin: FleetTwin
    audit: MemoryAudit
    identity: SwitchableIdentity
    server: MCPServer
    telemetry: TwinTelemetry | None = None
    deps: ServerDeps | None = None


MakeStack = Callable[..., Stack]
"""``make_stack(principal, limits=..., idempotency=...)``, the factory fixture of conftest.py."""


class MemoryIncidents:
    """An ``IncidentSource`` (mcp_server/incident_source.py) over a fixed list of incidents."""

    def __init__(self, incidents: Iterable[Incident]) -> None:
        self._by_id = {incident.id: incident for incident in incidents}

    async def list_incidents(
        self, statuses: Iterable[IncidentStatus] | None = None, limit: int = 50
    ) -> list[Incident]:
        wanted = set(statuses) if statuses is not None else None
        newest_first = sorted(self._by_id.values(), key=lambda i: i.opened_at, reverse=True)
        return [i for i in newest_first if wanted is None or i.status in wanted][:limit]

    async def get_incident(self, incident_id: str) -> Incident | None:
        return self._by_id.get(incident_id)

    async def update(self, incident_id: str, change: Callable[[Incident], None]) -> Incident:
        incident = self._by_id[incident_id].model_copy(deep=True)
        change(incident)
        self._by_id[incident_id] = incident
        return incident


T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def sample_incidents() -> list[Incident]:
    """A mitigated Xid 79 incident with plan, actions and timeline, and an older resolved one."""
    fell_off = Incident(
        id="inc-xid79-node-003",
        cluster="sim-a",
        kind="gpu_fell_off_bus",
        title="GPU 2 on node-003 fell off the bus",
        severity="critical",
        status="mitigated",
        opened_at=T0,
        updated_at=T0 + timedelta(minutes=3),
        root_cause=RootCause(
            entity_type="gpu",
            entity_id="node-003/0000:3a:00.0",
            confidence=0.95,
            evidence=["NVRM: Xid (PCI:0000:3a:00): 79, GPU has fallen off the bus."],
        ),
        entity="node-003/0000:3a:00.0",
        xids=[79],
        event_ids=["ev-1", "ev-2"],
        event_count=2,
        affected_nodes=["node-003"],
        affected_gpus=["node-003/2"],
        affected_jobs=["train-01"],
        plan=Plan(
            planner="rules",
            disposition="mitigate",
            rationale="Xid 79: isolate the GPU and restart the job from its checkpoint",
            actions=[RunbookInvocation(runbook="gpu-fell-off-bus", params={"node": "node-003", "gpu": 2})],
        ),
        actions=[
            ActionRecord(
                run_id="run-1",
                step="isolate",
                tool="isolate_gpu",
                arguments={"node": "node-003", "gpu": 2},
                decision="allow",
                reasons=["role 'agent' may call the operational tool isolate_gpu"],
                ok=True,
                result={"changed": True},
                time=T0 + timedelta(minutes=1),
            )
        ],
        timeline=[TimelineEntry(time=T0, what="opened", detail="Xid 79 on node-003 GPU 2")],
        gpu_hours_lost=12.34567,
    )
    old = Incident(
        id="inc-xid31-node-010",
        cluster="sim-a",
        kind="gpu_mmu_fault",
        title="Xid 31 on node-010",
        severity="warning",
        status="resolved",
        opened_at=T0 - timedelta(days=1),
        updated_at=T0 - timedelta(days=1) + timedelta(minutes=10),
        xids=[31],
        event_count=1,
        affected_nodes=["node-010"],
        affected_jobs=["train-02"],
    )
    return [old, fell_off]


def ok(result: CallToolResult) -> dict[str, Any]:
    """The structured answer of a successful call (fails the test with the error text otherwise)."""
    assert not result.is_error, text_of(result)
    answer: dict[str, Any] | None = result.structured_content
    assert answer is not None
    return answer


def error(result: CallToolResult) -> str:
    """The text of a tool error (fails the test when the call succeeded)."""
    assert result.is_error, f"expected a tool error, got {result.structured_content}"
    message = text_of(result)
    assert message
    return message


def refusal(result: CallToolResult) -> Refusal:
    """The refusal of a call the gate refused (fails the test for a success or another failure)."""
    error(result)
    found = refusal_of(result.is_error, result.structured_content)
    assert found is not None, f"expected a refusal, got {text_of(result)!r}"
    return found


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


@asynccontextmanager
async def held(client: Client) -> AsyncIterator[Client]:
    """Keep ``client`` connected in a task of its own for the length of the block.

    pytest-asyncio sets a fixture up and tears it down in different tasks, and anyio refuses to
    leave a cancel scope (the client's task group) from another task than the one that entered it;
    so one task enters and leaves the client, and the test talks to it meanwhile.
    """
    connected = asyncio.Event()
    done = asyncio.Event()

    async def hold() -> None:
        async with client:
            connected.set()
            await done.wait()

    task = asyncio.create_task(hold())
    waiting = asyncio.create_task(connected.wait())
    await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
    if not connected.is_set():
        waiting.cancel()
        await task  # raises why it could not connect
    try:
        yield client
    finally:
        done.set()
        await task


class ScriptedPerson:
    """An MCP client's elicitation callback that answers like a person at a form, and remembers
    every question it was shown."""

    def __init__(self, action: str = "accept", confirm: bool = True) -> None:
        self.action, self.confirm = action, confirm
        self.questions: list[str] = []

    async def __call__(self, context: Any, params: ElicitRequestParams) -> ElicitResult:
        self.questions.append(params.message)
        content = {"confirm": self.confirm} if self.action == "accept" else None
        return ElicitResult(action=self.action, content=content)  # type: ignore[arg-type]
