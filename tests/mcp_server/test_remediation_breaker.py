"""The circuit breaker, observe-only mode and the out-of-service share, through the MCP tools.

16 nodes and a 20% threshold: three nodes taken out within the window are fine (18.75%), a fourth
(25%) trips the breaker instead of going ahead."""

from __future__ import annotations

import asyncio

from mcp_server.gate.breaker import BreakerState, MemoryBreaker
from mcp_server.gate.guard import DENIED
from mcp_server.gate.policy import PolicyGate
from mcp_server.server import build_server
from tests.mcp_server.remediation_rig import build_rig, connected
from tests.mcp_server.support import AGENT, OPERATOR, refusal


async def test_the_breaker_trips_blocks_every_isolation_and_holds_until_a_person_resets_it(
    policy_gate: PolicyGate,
) -> None:
    async with connected(build_rig(policy_gate, breaker_threshold_pct=20)) as rig:
        await rig.ok("isolate_gpu", node="node-013", gpu=0, reason="Xid 48")
        await rig.ok("cordon_node", node="node-014", reason="Xid 79")
        await rig.ok("drain_node", node="node-015", reason="Xid 119")
        same_node = await rig.ok("isolate_gpu", node="node-013", gpu=1, reason="Xid 48")  # no new node
        tripped, trip = await rig.refused("cordon_node", node="node-016", reason="Xid 79")
        held_back = not rig.twin.node("node-016").cordoned
        status = await rig.ok("safety_status")
        still, still_open = await rig.refused("isolate_gpu", node="node-013", gpu=2, reason="Xid 48")
        repairs_go_on = await rig.ok("restart_from_checkpoint", job="train-02", reason="Xid 13")
        by_agent = await rig.error("reset_breaker", comment="looks fine")
        rig.as_(OPERATOR)
        reset = await rig.ok("reset_breaker", comment="bad driver rolled back", backlog="escalate")
        again = await rig.ok("reset_breaker", comment="twice")
        rig.as_(AGENT)
        after = await rig.ok("cordon_node", node="node-016", reason="Xid 79")
        status_after = await rig.ok("safety_status")

    assert same_node["changed"]
    assert DENIED in tripped and "circuit breaker open" in tripped
    assert (trip.kind, trip.rule) == (still_open.kind, still_open.rule) == ("breaker_open", "breaker-open")
    assert "after 25% of the cluster's nodes were taken out within its window (threshold 20%)" in tripped
    breaker = status["breaker"]
    assert breaker["open"] is True and breaker["trips"] == 1
    assert breaker["taken_out"] == ["node-013", "node-014", "node-015"]
    assert "would have taken 4 of 16 nodes (25%) out" in breaker["trip_reason"]
    assert held_back
    assert "circuit breaker open" in still and not rig.twin.gpu("node-013", 2).isolated
    assert repairs_go_on["changed"]
    assert "reset_breaker is reserved to people" in by_agent
    assert reset["changed"] and "held incidents: escalate" in reset["detail"]
    assert not again["changed"]
    assert after["changed"]
    assert status_after["breaker"]["open"] is False
    assert status_after["breaker"]["taken_out"] == ["node-016"]  # a new window since the reset
    assert (status_after["breaker"]["reset_by"], status_after["breaker"]["backlog"]) == ("olga", "escalate")
    trail = [(e.principal, e.tool, e.decision) for e in rig.audit.entries]
    assert ("triage-agent", "trip_breaker", "deny") in trail
    assert ("olga", "reset_breaker", "allow") in trail
    assert ("triage-agent", "reset_breaker", "deny") in trail


async def test_a_dry_run_reports_that_the_breaker_would_trip_without_tripping_it(
    policy_gate: PolicyGate,
) -> None:
    async with connected(build_rig(policy_gate, breaker_threshold_pct=5)) as rig:
        message = await rig.error("cordon_node", node="node-013", reason="check", dry_run=True)
        status = await rig.ok("safety_status")

    assert "would trip the circuit breaker" in message and "circuit breaker open" not in message
    assert status["breaker"]["open"] is False and status["breaker"]["trips"] == 0


async def test_no_action_may_take_more_of_the_cluster_out_of_service_than_allowed(
    policy_gate: PolicyGate,
) -> None:
    async with connected(build_rig(policy_gate, max_out_of_service_pct=10)) as rig:
        await rig.ok("cordon_node", node="node-013", reason="check")  # 1 of 16: 7%
        again = await rig.ok("drain_node", node="node-013", reason="check")  # the same node: still 7%
        message = await rig.error("cordon_node", node="node-014", reason="check")  # 2 of 16: 13%

    assert again["changed"] is False
    assert "blast radius rule max-out-of-service: cordon_node would put 13% of the cluster's nodes" in message
    assert "limit 10%" in message


async def test_observe_only_plans_and_records_but_changes_nothing(policy_gate: PolicyGate) -> None:
    async with connected(build_rig(policy_gate, observe_only=True)) as rig:
        before = rig.twin.job("train-02").model_dump()
        planned = await rig.ok("swap_spare", job="train-02", node="node-010", reason="Xid 79", dry_run=True)
        refused = await rig.error("swap_spare", job="train-02", node="node-010", reason="Xid 79")
        status = await rig.ok("safety_status")

    assert planned["dry_run"] and not planned["changed"] and planned["policy"]["decision"] == "allow"
    assert "observe-only mode" in refused and "AIOPS_OBSERVE_ONLY=false" in refused
    assert rig.twin.job("train-02").model_dump() == before
    assert status["observe_only"] is True
    assert [(e.tool, e.decision, e.dry_run) for e in rig.audit.entries] == [
        ("swap_spare", "allow", True),
        ("swap_spare", "deny", False),
    ]


class _BothReadFirst(MemoryBreaker):
    """A breaker store whose next ``waiters`` loads all return only once every one of them has read:
    the callers' policy checks all see the same state before any of them acts (the race of two agent
    replicas isolating at the same moment)."""

    def __init__(self) -> None:
        super().__init__()
        self.waiters = 0
        self._arrived = 0
        self._all_read = asyncio.Event()

    async def load(self, cluster: str) -> BreakerState:
        state = await super().load(cluster)
        if self.waiters:
            self._arrived += 1
            if self._arrived >= self.waiters:
                self._all_read.set()
            await asyncio.wait_for(self._all_read.wait(), timeout=30)
        return state


async def test_two_take_outs_at_once_cannot_both_pass_the_threshold(policy_gate: PolicyGate) -> None:
    rig = build_rig(policy_gate, breaker_threshold_pct=20)  # 3 of 16 nodes fine, a 4th trips
    breaker = _BothReadFirst()
    rig.deps.breaker = rig.breaker = breaker
    rig.server = build_server(rig.deps)
    async with connected(rig):
        await rig.ok("cordon_node", node="node-013", reason="Xid 79")
        await rig.ok("cordon_node", node="node-014", reason="Xid 79")
        breaker.waiters = 2
        results = await asyncio.gather(
            rig.client.call_tool("cordon_node", {"node": "node-015", "reason": "Xid 79"}),
            rig.client.call_tool("cordon_node", {"node": "node-016", "reason": "Xid 79"}),
        )
        breaker.waiters = 0
        status = await rig.ok("safety_status")

    refused = [refusal(r) for r in results if r.is_error]
    assert len(refused) == 1 and refused[0].kind == "breaker_open"
    cordoned = [n for n in ("node-015", "node-016") if rig.twin.node(n).cordoned]
    assert len(cordoned) == 1
    assert status["breaker"]["open"] is True and status["breaker"]["trips"] == 1
    assert status["breaker"]["taken_out"] == ["node-013", "node-014", *cordoned]
