"""Fixtures for the Claude planner: the loopback Messages API, the real SDK pointed at it, and a
real MCP server over a fleet twin as the agent's tools."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from anthropic import AsyncAnthropic
from mcp import Client

from agents.claude import ClaudeLimits, ClaudePlanner, make_client
from agents.facts import Facts, gather_facts
from contracts.client import McpToolClient
from evals.loopback_anthropic import LoopbackMessagesServer
from events.incident import Incident, RootCause
from fleet import FleetSpec, FleetTwin
from mcp_server.backends.twin.backend import TwinBackend
from mcp_server.deps import PolicyLimits, ServerDeps
from mcp_server.gate.audit import MemoryAudit
from mcp_server.gate.policy import PolicyGate, Principal
from mcp_server.identity import fixed_identity
from mcp_server.server import build_server
from runbooks.library import RunbookLibrary
from tests.mcp_server.support import held

AGENT = Principal(id="triage-agent", role="agent", kind="agent")
TEST_KEY = "test-key-not-a-secret"
WARMUP_S = 2700  # 45 simulated minutes: the training jobs hold checkpoints


@pytest.fixture
def loopback() -> Iterator[LoopbackMessagesServer]:
    with LoopbackMessagesServer() as server:
        yield server


@pytest.fixture
async def anthropic_client(loopback: LoopbackMessagesServer) -> AsyncIterator[AsyncAnthropic]:
    client = make_client(TEST_KEY, loopback.url)
    yield client
    await client.close()


@pytest.fixture
def twin() -> FleetTwin:
    """train-01 on node-001..008, train-02 on node-009..012, node-013..014 idle, spares after."""
    fleet = FleetTwin(FleetSpec.small())
    fleet.advance(WARMUP_S)
    return fleet


@pytest.fixture
def audit() -> MemoryAudit:
    return MemoryAudit()


@pytest.fixture
async def tools(twin: FleetTwin, audit: MemoryAudit) -> AsyncIterator[McpToolClient]:
    """The agent's MCP client, as the platform wires it: role agent, the real policy gate."""
    deps = ServerDeps(
        backend=TwinBackend(twin),
        gate=PolicyGate.from_directory(),
        identity=fixed_identity(AGENT),
        audit=audit,
        limits=PolicyLimits(),
    )
    async with held(Client(build_server(deps))) as client:
        yield McpToolClient(client)


PlannerFactory = Callable[..., ClaudePlanner]


@pytest.fixture
def make_planner(anthropic_client: AsyncAnthropic, tools: McpToolClient) -> PlannerFactory:
    """``make_planner(max_steps=3, ...)``: a Claude planner with these limits over the loopback."""

    def make(**limits: float) -> ClaudePlanner:
        return ClaudePlanner(
            anthropic_client,
            tools,
            library=RunbookLibrary.load(),
            model="claude-sonnet-4-6",
            limits=ClaudeLimits(**limits),  # type: ignore[arg-type]
        )

    return make


async def xid_incident(
    twin: FleetTwin, tools: McpToolClient, node: str, gpu: int, xid: int, *, lines: list[str] | None = None
) -> tuple[Incident, Facts]:
    """The incident and facts the agent would hold after ``xid`` on ``node`` GPU ``gpu``."""
    raw = lines if lines is not None else twin.inject_xid(node, gpu, xid)
    incident = Incident(
        id=f"inc-{node}-{gpu}-{xid}",
        cluster=twin.name,
        kind="xid",
        title=f"Xid {xid} on {node} GPU {gpu}",
        severity="critical",
        entity=f"{node}/{twin.gpu(node, gpu).pci_bus_id}",
        root_cause=RootCause(
            entity_type="gpu", entity_id=f"{node}/gpu{gpu}", confidence=0.5, evidence=raw[:3]
        ),
        xids=[xid],
        event_count=len(raw),
        affected_nodes=[node],
        affected_gpus=[f"{node}/{gpu}"],
    )
    for line in raw:
        incident.note("event", line)
    return incident, await gather_facts(tools, node, gpu, None)
