"""Pre-emptive removal on the fleet twin, through the real MCP client and the policy gate: a GPU whose
corrected ECC errors predict failure leaves its job at the job's next stop or checkpoint boundary,
an idle one is cordoned and handed to the deferred repair, a swap into the reserve waits for a
person, replicas flag a node once; recurring thermal slowdown and a lemon triage left in service are
precursors too."""

from __future__ import annotations

from datetime import timedelta

import pytest

from agents.preemptive import Preemption, PreemptiveRemoval, flag_of
from agents.store import IncidentStore
from contracts.client import McpToolClient
from events.documents import MemoryDocuments
from events.incident import Incident, Plan, RunbookInvocation
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
        plan=Plan(planner="rules", disposition="no_action", rationale="a trend to watch"),
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


def test_recurring_thermal_slowdown_is_a_precursor_of_a_thermal_fault() -> None:
    base = Incident(id="i", cluster="c", kind="ecc", affected_gpus=["node-001/4"])
    flagged = flag_of(base.model_copy(update={"findings": ["ecc.thermal_recurring"]}))
    assert flagged is not None and "thermal" in flagged.why


def lemon(plan: Plan | None, status: str = "escalated") -> Incident:
    return Incident(
        id="inc-lemon",
        cluster="c",
        kind="ecc",
        status=status,  # type: ignore[arg-type]
        findings=["ecc.remap_pending", "suspected_bad_hardware"],
        affected_gpus=["node-007/5"],
        plan=plan,
    )


def test_a_lemon_that_triage_isolated_or_drained_is_not_flagged_again() -> None:
    isolate = RunbookInvocation(runbook="isolate-gpu", params={"node": "node-007", "gpu": 5})
    reset = RunbookInvocation(runbook="reset-gpu", params={"node": "node-007", "gpu": 5})
    for actions in ([isolate], [reset]):
        assert (
            flag_of(lemon(Plan(planner="rules", disposition="escalate", rationale="", actions=actions)))
            is None
        )
    assert flag_of(lemon(None, status="open")) is None  # not planned yet: the next round looks again


def test_a_lemon_whose_incident_leaves_it_in_service_is_flagged() -> None:
    # The catalog's repetition rule tripped on an idle GPU (Xid 94 five times in a day -> ticket):
    # triage opens a ticket, but nothing stops the next job landing on it. A swap out of one job
    # does not stop the next one either.
    escalate = RunbookInvocation(runbook="escalate", params={"node": "node-007"})
    swap = RunbookInvocation(runbook="swap-spare", params={"job": "train-01", "node": "node-007"})
    for actions in ([escalate], [swap, escalate]):
        plan = Plan(planner="rules", disposition="escalate", rationale="", actions=actions)
        flagged = flag_of(lemon(plan))
        assert flagged is not None and (flagged.node, flagged.gpu) == ("node-007", 5)
        assert "repeated offender" in flagged.why


async def test_a_cordoned_idle_node_is_handed_to_the_deferred_repair(policy_gate: PolicyGate) -> None:
    rig = build_rig(policy_gate, min_spares=0)
    store = IncidentStore.in_memory()
    await store.create(warning(rig, node="node-015", gpu=0, findings=("ecc.thermal_recurring",)))
    async with connected(rig):
        pre = await removal(rig, store)
        flag = await run_until(rig, pre, "cordoned", limit=2)
    assert flag.repair == "queued"
    incident = await store.get_incident("inc-node-015")
    assert incident is not None and incident.plan is not None
    assert [(d.runbook, d.params) for d in incident.plan.deferred] == [
        ("reset-gpu", {"node": "node-015", "gpu": 0})
    ]
    assert "pre-emptive removal: repair queued" in [e.what for e in incident.timeline]


async def test_a_cordoned_lemon_is_left_to_a_person_not_repaired(policy_gate: PolicyGate) -> None:
    rig = build_rig(policy_gate, min_spares=0)
    store = IncidentStore.in_memory()
    found = ("ecc.remap_pending", "suspected_bad_hardware")
    await store.create(warning(rig, node="node-015", gpu=0, findings=found))
    async with connected(rig):
        pre = await removal(rig, store)
        flag = await run_until(rig, pre, "cordoned", limit=2)
    assert flag.repair == "not_queued" and rig.twin.node("node-015").cordoned
    incident = await store.get_incident("inc-node-015")
    assert incident is not None and incident.plan is not None and incident.plan.deferred == []
    assert "pre-emptive removal: no automatic repair" in [e.what for e in incident.timeline]


async def test_a_later_incident_flags_a_node_whose_earlier_removal_is_over(policy_gate: PolicyGate) -> None:
    rig = build_rig(policy_gate, min_spares=0)
    store = IncidentStore.in_memory()
    await store.create(warning(rig, node="node-015", gpu=0))
    async with connected(rig):
        pre = await removal(rig, store)
        await run_until(rig, pre, "cordoned", limit=2)
        rig.twin.advance(3600)
        later = warning(rig, node="node-015", gpu=1, findings=("ecc.thermal_recurring",))
        await store.create(later.model_copy(update={"id": "inc-later"}))
        assert await pre.scan() == 1
        assert await pre.scan() == 0  # the older incident does not take the flag back
    [flag] = await pre.flags.values()
    assert (flag.incident_id, flag.gpu, flag.state) == ("inc-later", 1, "waiting")


async def test_a_lemon_left_out_for_a_person_is_not_flagged_again(policy_gate: PolicyGate) -> None:
    rig = build_rig(policy_gate, min_spares=0)
    store = IncidentStore.in_memory()
    found = ("suspected_bad_hardware",)
    await store.create(warning(rig, node="node-015", gpu=0, findings=found))
    async with connected(rig):
        pre = await removal(rig, store)
        await run_until(rig, pre, "cordoned", limit=2)
        rig.twin.advance(3600)
        again = warning(rig, node="node-015", gpu=0, findings=found)
        await store.create(again.model_copy(update={"id": "inc-again"}))
        assert await pre.scan() == 0  # its node is still cordoned, waiting for a person
    [flag] = await pre.flags.values()
    assert (flag.incident_id, flag.state, flag.repair) == ("inc-node-015", "cordoned", "not_queued")
