"""A server over a fleet twin for the remediation, approval and breaker tests, with its stores in
reach (approvals, breaker, tickets, audit) and an identity the test switches between calls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from mcp import Client
from mcp.server import MCPServer

from contracts.refusal import Refusal
from fleet import FleetSpec, FleetTwin
from mcp_server.backends.twin.backend import TwinBackend
from mcp_server.deps import PolicyLimits, ServerDeps
from mcp_server.escalation import MemoryDesk
from mcp_server.gate.approvals import MemoryApprovals
from mcp_server.gate.audit import MemoryAudit
from mcp_server.gate.breaker import MemoryBreaker
from mcp_server.gate.policy import PolicyGate, Principal
from mcp_server.server import build_server
from tests.mcp_server.support import AGENT, SwitchableIdentity, error, held, ok, refusal

WARMUP_S = 2700
OPERATOR_2 = Principal(id="omar", role="operator", kind="person")


@dataclass
class Rig:
    twin: FleetTwin
    deps: ServerDeps
    audit: MemoryAudit
    approvals: MemoryApprovals
    breaker: MemoryBreaker
    desk: MemoryDesk
    identity: SwitchableIdentity
    server: MCPServer
    client: Client = field(init=False)

    def as_(self, principal: Principal) -> Rig:
        self.identity.principal = principal
        return self

    async def ok(self, tool: str, **arguments: Any) -> dict[str, Any]:
        return ok(await self.client.call_tool(tool, arguments))

    async def error(self, tool: str, **arguments: Any) -> str:
        return error(await self.client.call_tool(tool, arguments))

    async def refused(self, tool: str, **arguments: Any) -> tuple[str, Refusal]:
        """The sentence and the refusal of a call the gate refuses."""
        result = await self.client.call_tool(tool, arguments)
        return error(result), refusal(result)

    def audited(self) -> list[tuple[str, str, str, bool]]:
        return [(e.principal, e.tool, e.decision, e.ok) for e in self.audit.entries]


def build_rig(
    gate: PolicyGate, principal: Principal = AGENT, twin: FleetTwin | None = None, **limits: Any
) -> Rig:
    if twin is None:
        twin = FleetTwin(FleetSpec.small())
        twin.advance(WARMUP_S)
    audit, approvals, breaker, desk = MemoryAudit(), MemoryApprovals(), MemoryBreaker(), MemoryDesk()
    identity = SwitchableIdentity(principal)
    deps = ServerDeps(
        backend=TwinBackend(twin),
        gate=gate,
        identity=identity,
        audit=audit,
        approvals=approvals,
        breaker=breaker,
        desk=desk,
        limits=PolicyLimits(**limits),
    )
    return Rig(twin, deps, audit, approvals, breaker, desk, identity, build_server(deps))


@asynccontextmanager
async def connected(rig: Rig) -> AsyncIterator[Rig]:
    async with held(Client(rig.server)) as client:
        rig.client = client
        yield rig
