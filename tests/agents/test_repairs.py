"""Deferred repairs (agents/repairs.py) against the fleet twin through the real MCP client and gate,
with the repair records and incidents in a real NATS KV (compare-and-set)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from mcp import Client
from nats.js import JetStreamContext

from agents.repairs import RepairWorker
from agents.store import IncidentStore
from contracts.client import McpToolClient
from events import subjects
from events.documents import KvDocuments
from events.incident import Incident, Plan, RunbookInvocation
from events.repairs import Repair, RepairBook
from fleet import FleetSpec, FleetTwin
from mcp_server.deps import PolicyLimits, ServerDeps
from mcp_server.gate.audit import MemoryAudit
from mcp_server.gate.policy import PolicyGate
from mcp_server.identity import fixed_identity
from mcp_server.server import build_server
from runbooks.engine import RunbookEngine
from runbooks.library import RunbookLibrary
from runbooks.state import MemoryRunStore
from tests.mcp_server.support import AGENT, held

pytestmark = pytest.mark.slow


@dataclass
class Rig:
    twin: FleetTwin
    audit: MemoryAudit
    store: IncidentStore
    docs: KvDocuments[Repair]
    tools: McpToolClient
    engine: RunbookEngine

    def worker(self, owner: str) -> RepairWorker:
        return RepairWorker(
            store=self.store,
            docs=self.docs,
            tools=self.tools,
            engine=self.engine,
            owner=owner,
            clock=self.twin.now,
        )

    def done(self, tool: str) -> list[dict[str, object]]:
        return [
            r.arguments
            for r in self.audit.entries
            if r.tool == tool and r.ok and r.decision == "allow" and not r.dry_run
        ]


@pytest.fixture
async def rig(js: JetStreamContext) -> AsyncIterator[Rig]:
    twin = FleetTwin(FleetSpec.small())
    twin.advance(2700)
    store = await IncidentStore.open(js)
    docs = KvDocuments(await js.key_value(subjects.BUCKET_REPAIRS), Repair)
    audit = MemoryAudit()
    from mcp_server.backends.twin.backend import TwinBackend

    deps = ServerDeps(
        backend=TwinBackend(twin),
        gate=PolicyGate.from_directory(),
        identity=fixed_identity(AGENT),
        audit=audit,
        incidents=store,
        repairs=RepairBook(docs),
        limits=PolicyLimits(),
    )
    async with held(Client(build_server(deps))) as client:
        tools = McpToolClient(client)
        yield Rig(
            twin, audit, store, docs, tools, RunbookEngine(tools, MemoryRunStore(), RunbookLibrary.load())
        )


async def incident_with_repair(rig: Rig, deferred: RunbookInvocation, status: str = "mitigated") -> Incident:
    node = str(deferred.params["node"])
    incident = Incident(
        id=f"inc-{node}",
        cluster=rig.twin.name,
        kind="xid",
        status=status,  # type: ignore[arg-type]
        affected_nodes=[node],
        plan=Plan(planner="rules", disposition="mitigate", rationale="test", deferred=[deferred]),
    )
    return await rig.store.create(incident)


async def test_a_deferred_reboot_runs_once_the_node_is_idle_and_returns_it_to_service(rig: Rig) -> None:
    rig.twin.inject_xid("node-013", 2, 79)  # an idle node: its GPU 2 fell off the bus
    incident = await incident_with_repair(
        rig, RunbookInvocation(runbook="drain-and-reboot-node", params={"node": "node-013"})
    )
    worker = rig.worker("agent-a")

    assert await worker.tick()
    repair = await RepairBook(rig.docs).get("node-013")
    assert repair is not None and repair.status == "running" and repair.owner == "agent-a"
    assert [a["node"] for a in rig.done("reboot_node")] == ["node-013"]

    rig.twin.advance(600)  # the reboot is over
    assert await worker.tick()
    repair = await RepairBook(rig.docs).get("node-013")
    assert repair is not None and repair.status == "returned" and repair.returned_to == "service"
    assert rig.twin.gpu("node-013", 2).health == "healthy"
    assert not rig.twin.node("node-013").cordoned
    assert [r.runbook for r in repair.runs] == ["drain-and-reboot-node", "return-to-service"]
    stored = await rig.store.get_incident(incident.id)
    assert stored is not None
    steps = [e.what for e in stored.timeline]
    assert steps.index("repair queued") < steps.index("repair started") < steps.index("repair done")
    assert "reboot_node" in [a.tool for a in stored.actions]

    listed = await rig.tools.call("list_repairs", {"node": "node-013"})
    assert listed.ok
    assert [(r["node"], r["status"]) for r in listed.structured["repairs"]] == [("node-013", "returned")]


async def test_a_repair_waits_while_a_job_runs_on_the_node(rig: Rig) -> None:
    await incident_with_repair(
        rig, RunbookInvocation(runbook="reset-gpu", params={"node": "node-001", "gpu": 3})
    )
    worker = rig.worker("agent-a")

    await worker.tick()
    assert not await worker.tick()  # nothing new: it still waits
    repair = await RepairBook(rig.docs).get("node-001")
    assert repair is not None and repair.status == "queued"
    assert repair.waiting_for is not None and "train-01" in repair.waiting_for
    assert rig.done("drain_node") == [] and rig.done("reset_gpu") == []


async def test_a_repair_waits_until_its_incident_is_contained(rig: Rig) -> None:
    rig.twin.inject_xid("node-013", 2, 79)
    await incident_with_repair(
        rig,
        RunbookInvocation(runbook="drain-and-reboot-node", params={"node": "node-013"}),
        status="mitigating",
    )
    await rig.worker("agent-a").tick()
    repair = await RepairBook(rig.docs).get("node-013")
    assert repair is not None and repair.status == "queued" and rig.done("reboot_node") == []


async def test_two_replicas_never_both_run_one_repair(rig: Rig) -> None:
    rig.twin.inject_xid("node-014", 5, 79)
    await incident_with_repair(
        rig, RunbookInvocation(runbook="drain-and-reboot-node", params={"node": "node-014"})
    )
    a, b = rig.worker("agent-a"), rig.worker("agent-b")

    await asyncio.gather(a.tick(), b.tick())
    await asyncio.gather(a.tick(), b.tick())

    assert [x["node"] for x in rig.done("reboot_node")] == ["node-014"]
    assert [x["node"] for x in rig.done("drain_node")] == ["node-014"]
    repair = await RepairBook(rig.docs).get("node-014")
    assert repair is not None and repair.owner in ("agent-a", "agent-b")
    assert len(repair.incidents) == 1


async def test_a_failed_reset_falls_back_to_a_reboot(rig: Rig) -> None:
    rig.twin.inject_xid("node-013", 4, 79)  # off the bus: the driver cannot reset it
    await incident_with_repair(
        rig, RunbookInvocation(runbook="reset-gpu", params={"node": "node-013", "gpu": 4})
    )
    worker = rig.worker("agent-a")

    await worker.tick()
    rig.twin.advance(600)
    await worker.tick()

    repair = await RepairBook(rig.docs).get("node-013")
    assert repair is not None and repair.status == "returned"
    assert [r.runbook for r in repair.runs] == ["reset-gpu", "drain-and-reboot-node", "return-to-service"]
    assert rig.done("reset_gpu") == [] and [x["node"] for x in rig.done("reboot_node")] == ["node-013"]


async def test_a_repair_never_spends_the_circuit_breakers_budget(rig: Rig) -> None:
    # 16 nodes, threshold 20%: three nodes taken out in the window, a fourth would trip the breaker.
    for node in ("node-009", "node-010", "node-011"):
        done = await rig.tools.call("isolate_gpu", {"node": node, "gpu": 0, "reason": "a fault elsewhere"})
        assert done.ok, done.text
    rig.twin.inject_xid("node-013", 2, 79)
    await incident_with_repair(
        rig, RunbookInvocation(runbook="drain-and-reboot-node", params={"node": "node-013"})
    )

    await rig.worker("agent-a").tick()

    repair = await RepairBook(rig.docs).get("node-013")
    assert repair is not None and repair.status == "queued"
    assert repair.waiting_for is not None and "circuit breaker" in repair.waiting_for
    assert rig.done("drain_node") == []
    safety = await rig.tools.call("safety_status", {})
    assert safety.structured["breaker"]["open"] is False


async def test_a_node_cordoned_by_preemptive_removal_is_repaired_and_returned(rig: Rig) -> None:
    from agents.preemptive import Preemption, PreemptiveRemoval
    from events.documents import MemoryDocuments

    # An idle GPU keeps throttling: triage calls it a trend, pre-emptive removal cordons its node.
    rig.twin.throttle_gpu("node-014", 4, 1.15)
    await rig.store.create(
        Incident(
            id="inc-thermal",
            cluster=rig.twin.name,
            kind="ecc",
            status="suppressed",
            opened_at=rig.twin.now(),
            findings=["ecc.thermal_recurring"],
            affected_nodes=["node-014"],
            affected_gpus=["node-014/4"],
            plan=Plan(planner="rules", disposition="no_action", rationale="a trend to watch"),
        )
    )
    pre = PreemptiveRemoval(rig.tools, MemoryDocuments(Preemption), rig.store)
    await pre.tick()
    [flag] = await pre.flags.values()
    assert (flag.state, flag.repair) == ("cordoned", "queued") and rig.twin.node("node-014").cordoned

    worker = rig.worker("agent-a")
    for _ in range(20):  # the deferred repair: reset, verify, return (the reset takes simulated time)
        await worker.tick()
        repair = await RepairBook(rig.docs).get("node-014")
        if repair is not None and not repair.active:
            break
        rig.twin.advance(60)
    assert repair is not None and repair.status == "returned" and repair.returned_to == "service"
    assert [r.runbook for r in repair.runs] == ["reset-gpu", "return-to-service"]
    assert not rig.twin.node("node-014").cordoned
    assert rig.twin.telemetry.counters("node-014", 4).clock_event_reasons == 0  # the reset cleared it
    stored = await rig.store.get_incident("inc-thermal")
    assert stored is not None and "repair done" in [e.what for e in stored.timeline]
