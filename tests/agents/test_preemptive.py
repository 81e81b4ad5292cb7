"""Pre-emptive removal on the fleet twin, through the real MCP client and the policy gate: a GPU whose
corrected ECC errors predict failure leaves its job at the job's next stop or checkpoint boundary,
an idle one is cordoned, a swap into the reserve waits for a person, replicas flag a node once."""

from __future__ import annotations

from datetime import timedelta

import pytest

from agents.preemptive import Preemption, PreemptiveRemoval, flag_of
from agents.store import IncidentStore
from contracts.client import McpToolClient
from events.documents import MemoryDocuments
from events.incident import Incident
from mcp_server.gate.policy import PolicyGate
from tests.mcp_server.remediation_rig import Rig, build_rig, connected
from tests.mcp_server.support import AGENT, OPERATOR


@pytest.fixture(scope="module")
def policy_gate() -> PolicyGate:
    return PolicyGate.from_directory()


NODE, GPU = "node-003", 2  # in train-01's gang (8 nodes, checkpoint every 1800 s)


def warning(
    rig: Rig, node: str = NODE, gpu: int = GPU, findings: tuple[str, ...] = ("ecc.sbe_rate",)
) -> Incident:
    return Incident(
        id=f"inc-{node}",
        cluster="sim-a",
        kind="ecc",
        status="suppressed",
        opened_at=rig.twin.now(),
        findings=list(findings),
        affected_nodes=[node],
        affected_gpus=[f"{node}/{gpu}"],
    )


async def removal(rig: Rig, store: IncidentStore, **kw: float) -> PreemptiveRemoval:
    return PreemptiveRemoval(McpToolClient(rig.client), MemoryDocuments(Preemption), store, **kw)


async def run_until(
    rig: Rig, pre: PreemptiveRemoval, state: str, *, step_s: float = 30, limit: int = 400
) -> Preemption:
    """Tick the loop as the twin's clock moves (simulated time; no sleeping)."""
    for _ in range(limit):
        await pre.tick()
        [flag] = await pre.flags.values()
        if flag.state == state:
            return flag
        rig.twin.advance(step_s)
    raise AssertionError(f"the flag never reached {state}: {flag}")


def test_the_rule_flags_precursors_and_leaves_faults_to_triage() -> None:
    base = Incident(id="i", cluster="c", kind="ecc", affected_gpus=["node-001/4"])
    assert flag_of(base.model_copy(update={"findings": ["ecc.retired_pages_soft"]})) is not None
    flagged = flag_of(base.model_copy(update={"findings": ["ecc.sbe_rate"]}))
    assert flagged is not None and (flagged.node, flagged.gpu) == ("node-001", 4)
    assert flag_of(base.model_copy(update={"findings": ["ecc.sbe_rate", "ecc.dbe"]})) is None
    assert flag_of(base.model_copy(update={"findings": ["ecc.remap_pending"]})) is None
    assert flag_of(base.model_copy(update={"findings": ["ecc.sbe_rate"], "affected_gpus": []})) is None


async def test_a_warned_gpu_leaves_its_job_at_the_next_checkpoint_boundary(policy_gate: PolicyGate) -> None:
    rig = build_rig(policy_gate, min_spares=0)
    store = IncidentStore.in_memory()
    await store.create(warning(rig))
    async with connected(rig):
        pre = await removal(rig, store, drain_after_s=3600)
        await pre.tick()
        [flag] = await pre.flags.values()
        assert flag.state == "waiting" and NODE in rig.twin.job("train-01").nodes  # not yet: no stop, no wait
        flag = await run_until(rig, pre, "swapped")
        status = await rig.ok("checkpoint_status", job="train-01")
    job = rig.twin.job("train-01")
    assert NODE not in job.nodes and job.replacements[-1].old == NODE
    assert "pre-emptive removal" in job.replacements[-1].reason
    assert flag.job == "train-01" and "checkpoint boundary" in flag.how
    assert rig.twin.now() - flag.flagged_at >= timedelta(seconds=3600)
    assert status["state"] in ("restarting", "running")
    calls = [(p, tool, decision) for p, tool, decision, _ in rig.audited()]
    assert (AGENT.id, "swap_spare", "allow") in calls and (
        AGENT.id,
        "restart_from_checkpoint",
        "allow",
    ) in calls
    incident = await store.get_incident(f"inc-{NODE}")
    assert incident is not None
    notes = [e.what for e in incident.timeline]
    assert notes.count("pre-emptive removal planned") == 1 and "pre-emptive removal done" in notes


async def test_a_job_stopped_for_another_reason_swaps_the_warned_node_at_that_stop(
    policy_gate: PolicyGate,
) -> None:
    rig = build_rig(policy_gate, min_spares=0)
    store = IncidentStore.in_memory()
    await store.create(warning(rig))
    async with connected(rig):
        pre = await removal(rig, store, drain_after_s=24 * 3600)
        await pre.tick()
        rig.twin.inject_xid("node-006", 1, 79)  # another node of the gang fails: the job stops
        rig.twin.advance(10)
        flag = await run_until(rig, pre, "swapped", limit=3)
    assert "stopped for another reason" in flag.how
    assert NODE not in rig.twin.job("train-01").nodes


async def test_a_swap_into_the_spare_reserve_waits_for_a_person_then_goes_ahead(
    policy_gate: PolicyGate,
) -> None:
    rig = build_rig(policy_gate, min_spares=2)  # the pool holds two: any swap dips into the reserve
    store = IncidentStore.in_memory()
    await store.create(warning(rig))
    async with connected(rig):
        pre = await removal(rig, store, drain_after_s=600)
        flag = await run_until(rig, pre, "awaiting_approval")
        assert flag.approval_id is not None and NODE in rig.twin.job("train-01").nodes
        rig.as_(OPERATOR)
        await rig.ok("approve_action", approval_id=flag.approval_id, comment="pull it before it fails")
        rig.as_(AGENT)
        flag = await run_until(rig, pre, "swapped", limit=3)
    assert NODE not in rig.twin.job("train-01").nodes
    incident = await store.get_incident(f"inc-{NODE}")
    assert incident is not None and "pre-emptive removal awaits approval" in [
        e.what for e in incident.timeline
    ]


async def test_an_idle_warned_gpu_has_its_node_cordoned_so_no_job_lands_on_it(
    policy_gate: PolicyGate,
) -> None:
    rig = build_rig(policy_gate, min_spares=0)
    store = IncidentStore.in_memory()
    await store.create(warning(rig, node="node-015", gpu=0, findings=("ecc.retired_pages_soft",)))
    async with connected(rig):
        pre = await removal(rig, store)
        flag = await run_until(rig, pre, "cordoned", limit=2)
    assert rig.twin.node("node-015").cordoned
    assert flag.job is None


async def test_two_replicas_flag_a_node_once(policy_gate: PolicyGate) -> None:
    rig = build_rig(policy_gate, min_spares=0)
    store = IncidentStore.in_memory()
    await store.create(warning(rig))
    flags = MemoryDocuments(Preemption)
    async with connected(rig):
        a = PreemptiveRemoval(McpToolClient(rig.client), flags, store)
        b = PreemptiveRemoval(McpToolClient(rig.client), flags, store)
        assert (await a.scan(), await b.scan()) == (1, 0)
    incident = await store.get_incident(f"inc-{NODE}")
    assert incident is not None
    assert [e.what for e in incident.timeline].count("pre-emptive removal planned") == 1
