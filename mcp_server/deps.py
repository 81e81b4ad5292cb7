"""What the tools are built from; the composition root fills it in."""

from __future__ import annotations

from dataclasses import dataclass, field

from mcp_server.audit import AuditSink, MemoryAudit
from mcp_server.backends.base import ClusterBackend
from mcp_server.idempotency import IdempotencyStore, MemoryIdempotency
from mcp_server.identity import IdentityResolver
from mcp_server.incident_source import IncidentSource, NoIncidents
from mcp_server.policy import PolicyGate


@dataclass(frozen=True)
class PolicyLimits:
    """Numbers operators set in configuration; the Cedar policies compare against them."""

    max_isolations_per_hour: int = 8


@dataclass
class ServerDeps:
    backend: ClusterBackend
    gate: PolicyGate
    identity: IdentityResolver
    audit: AuditSink = field(default_factory=MemoryAudit)
    idempotency: IdempotencyStore = field(default_factory=MemoryIdempotency)
    incidents: IncidentSource = field(default_factory=NoIncidents)
    limits: PolicyLimits = field(default_factory=PolicyLimits)
