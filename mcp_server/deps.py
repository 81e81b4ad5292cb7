"""What the tools are built from; the composition root fills it in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from events.checkpoint_times import CheckpointTimes
from events.documents import Documents, MemoryDocuments
from events.models import utcnow
from events.repairs import NoRepairs, RepairSource
from mcp_server.backends.base import ClusterBackend
from mcp_server.backends.telemetry import NoTelemetry, TelemetrySource
from mcp_server.escalation import EscalationDesk, MemoryDesk
from mcp_server.gate.approvals import ApprovalBook, MemoryApprovals
from mcp_server.gate.audit import AuditSink, MemoryAudit
from mcp_server.gate.breaker import BreakerStore, MemoryBreaker
from mcp_server.gate.idempotency import IdempotencyStore, MemoryIdempotency
from mcp_server.gate.policy import PolicyGate
from mcp_server.gate.safety import FreezeWindow
from mcp_server.identity import IdentityResolver
from mcp_server.incident_source import IncidentSource, NoIncidents
from runbooks.library import RunbookLibrary
from runbooks.state import MemoryRunStore, RunStore


@dataclass(frozen=True)
class PolicyLimits:
    """Numbers operators set in configuration; the Cedar policies compare against them."""

    max_isolations_per_hour: int = 8
    # The rest: see mcp_server/gate/policies/*.cedar and aiops/settings.py for what each means.
    max_out_of_service_pct: int = 30
    min_spares: int = 1
    # The reserve follows spare_advice (mcp_server/spare_reserve.py); min_spares is then its floor.
    min_spares_auto: bool = False
    max_gpu_hours_at_risk: int = 100
    breaker_window_s: float = 3600.0
    breaker_threshold_pct: int = 20
    approval_ttl_s: float = 3600.0
    agent_requires_approval: bool = False
    observe_only: bool = False
    freeze_windows: tuple[FreezeWindow, ...] = ()


@dataclass
class ServerDeps:
    backend: ClusterBackend
    gate: PolicyGate
    identity: IdentityResolver
    audit: AuditSink = field(default_factory=MemoryAudit)
    idempotency: IdempotencyStore = field(default_factory=MemoryIdempotency)
    incidents: IncidentSource = field(default_factory=NoIncidents)
    repairs: RepairSource = field(default_factory=NoRepairs)
    limits: PolicyLimits = field(default_factory=PolicyLimits)
    approvals: ApprovalBook = field(default_factory=MemoryApprovals)
    breaker: BreakerStore = field(default_factory=MemoryBreaker)
    desk: EscalationDesk = field(default_factory=MemoryDesk)
    telemetry: TelemetrySource = field(default_factory=NoTelemetry)
    runbooks: RunbookLibrary = field(default_factory=RunbookLibrary.load)
    runs: RunStore = field(default_factory=MemoryRunStore)
    # Checkpoint write times measured from the jobs' heartbeats (events/checkpoint_times.py).
    checkpoint_times: Documents[CheckpointTimes] = field(
        default_factory=lambda: MemoryDocuments(CheckpointTimes)
    )
    # A person's destructive call waits for their confirmation through MCP elicitation (and is
    # refused when their client cannot ask); off for the agent's and the chat front door's servers.
    confirm_destructive: bool = False
    # Hide every mutating tool and refuse mutations at the gate (see mcp_server/read_only.py).
    read_only: bool = False
    # The backend's clock: every record the tools write (audit, incident notes) carries it, so it
    # lines up with the events and incidents (the twin's clock on the embedded platform).
    clock: Callable[[], datetime] = utcnow
