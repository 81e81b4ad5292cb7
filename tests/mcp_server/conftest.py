"""Fixtures for the MCP server tests: a fleet twin with checkpoints, a server factory, a client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from mcp import Client

from fleet import FleetSpec, FleetTwin
from mcp_server.backends.twin.backend import TwinBackend
from mcp_server.backends.twin.telemetry import TwinTelemetry
from mcp_server.deps import PolicyLimits, ServerDeps
from mcp_server.gate.audit import MemoryAudit
from mcp_server.gate.idempotency import IdempotencyStore, MemoryIdempotency
from mcp_server.gate.policy import PolicyGate, Principal
from mcp_server.server import build_server
from tests.mcp_server.support import (
    OPERATOR,
    MakeStack,
    MemoryIncidents,
    Stack,
    SwitchableIdentity,
    held,
    sample_incidents,
)

# 45 simulated minutes: train-01 (30 min interval) and train-02 (20 min) each hold a checkpoint.
WARMUP_S = 2700


@pytest.fixture(scope="session")
def policy_gate() -> PolicyGate:
    return PolicyGate.from_directory()


@pytest.fixture
def twin() -> FleetTwin:
    """train-01 on node-001..008, train-02 on node-009..012, node-013..014 idle, node-015..016 spares."""
    fleet = FleetTwin(FleetSpec.small())
    fleet.advance(WARMUP_S)
    return fleet


@pytest.fixture
def make_stack(twin: FleetTwin, policy_gate: PolicyGate) -> MakeStack:
    """Build a server over the test's twin: ``make_stack(principal, limits=..., idempotency=...)``."""

    def make(
        principal: Principal = OPERATOR,
        *,
        limits: PolicyLimits | None = None,
        idempotency: IdempotencyStore | None = None,
        confirm_destructive: bool = False,
        read_only: bool = False,
    ) -> Stack:
        audit = MemoryAudit()
        identity = SwitchableIdentity(principal)
        telemetry = TwinTelemetry(twin)
        telemetry.sample()
        deps = ServerDeps(
            backend=TwinBackend(twin),
            gate=policy_gate,
            identity=identity,
            audit=audit,
            idempotency=idempotency if idempotency is not None else MemoryIdempotency(),
            incidents=MemoryIncidents(sample_incidents()),
            limits=limits or PolicyLimits(),
            telemetry=telemetry,
            confirm_destructive=confirm_destructive,
            read_only=read_only,
        )
        return Stack(
            twin=twin,
            audit=audit,
            identity=identity,
            server=build_server(deps),
            telemetry=telemetry,
            deps=deps,
        )

    return make


@pytest.fixture
def stack(make_stack: MakeStack) -> Stack:
    return make_stack()


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[Client]:
    async with held(Client(stack.server)) as connected:
        yield connected
