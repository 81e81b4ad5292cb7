"""The rules planner on ECC, hang, slowdown and shared-part incidents: the runbook and its reason."""

from __future__ import annotations

from agents.facts import Facts
from agents.planner import RulesPlanner
from events.incident import Incident, RootCause, TimelineEntry

WITH_SWAP = frozenset({"isolate-gpu", "restart-from-checkpoint", "swap-spare", "reset-gpu"})
BASIC = frozenset({"isolate-gpu", "restart-from-checkpoint"})
STALLED = Facts(node="node-005", gpu=2, job="train-01", job_state="stalled")
RUNNING = Facts(node="node-005", gpu=2, job="train-01", job_state="running")


def incident(kind: str, findings: list[str], **extra: object) -> Incident:
    return Incident.model_validate(
        {"id": "inc-1", "cluster": "sim-a", "kind": kind, "findings": findings, **extra}
    )


async def plan(inc: Incident, facts: Facts, runbooks: frozenset[str] = WITH_SWAP):
    return await RulesPlanner(runbooks).plan(inc, facts)


def steps(p) -> list[tuple[str, dict[str, object]]]:
    return [(a.runbook, {k: v for k, v in a.params.items() if k != "reason"}) for a in p.actions]


async def test_a_double_bit_error_isolates_the_gpu_and_restarts_the_job_from_its_checkpoint():
    p = await plan(incident("ecc", ["ecc.dbe", "ecc.remap_pending"]), STALLED)
    assert p.disposition == "mitigate"
    assert steps(p) == [
        ("isolate-gpu", {"node": "node-005", "gpu": 2}),
        ("restart-from-checkpoint", {"job": "train-01"}),
    ]
    assert "double-bit" in p.rationale


async def test_a_pending_row_remap_on_an_idle_gpu_schedules_a_gpu_reset():
    p = await plan(incident("ecc", ["ecc.remap_pending"]), Facts(node="node-013", gpu=2))
    assert p.disposition == "mitigate"
    assert steps(p) == [("reset-gpu", {"node": "node-013", "gpu": 2})]
    assert "reset" in p.rationale


async def test_a_pending_row_remap_under_a_healthy_job_interrupts_nothing_and_defers_the_reset():
    # NVIDIA / DCGM: a pending remap is applied at the next GPU reset; nothing to do now. The job
    # must not be drained or restarted for it; the reset waits for the GPU to be idle.
    for facts in (RUNNING, STALLED):
        p = await plan(incident("ecc", ["ecc.remap_pending"]), facts)
        assert p.disposition == "no_action" and p.actions == []
        assert [(a.runbook, a.params) for a in p.deferred] == [("reset-gpu", {"node": "node-005", "gpu": 2})]
        assert "deferred" in p.rationale


async def test_a_pending_row_remap_without_a_reset_runbook_still_interrupts_nothing():
    p = await plan(incident("ecc", ["ecc.remap_pending"]), RUNNING, BASIC)
    assert p.disposition == "no_action" and p.actions == [] and p.deferred == []


async def test_an_xid_63_with_dcgm_saying_a_remap_is_pending_schedules_the_reset_for_when_idle():
    # NVIDIA's catalog, Xid 63: IGNORE; the remap applies at the next reset.
    busy = await plan(incident("xid", ["ecc.remap_pending"], xids=[63]), RUNNING)
    assert busy.actions == [] and [a.runbook for a in busy.deferred] == ["reset-gpu"]
    idle = await plan(incident("xid", ["ecc.remap_pending"], xids=[63]), Facts(node="node-005", gpu=2))
    assert steps(idle) == [("reset-gpu", {"node": "node-005", "gpu": 2})]


async def test_a_row_remap_failure_isolates_and_escalates_for_replacement():
    p = await plan(incident("ecc", ["ecc.remap_failure"]), STALLED)
    assert p.disposition == "escalate" and p.actions[0].runbook == "isolate-gpu"
    assert "RMA" in p.rationale


async def test_a_single_bit_rate_is_watched_not_acted_on():
    p = await plan(incident("ecc", ["ecc.sbe_rate"]), RUNNING)
    assert p.disposition == "no_action" and p.actions == []


def hang_incident(culprit: bool) -> Incident:
    return incident(
        "hang",
        ["hang", "hang.culprit"] if culprit else ["hang"],
        affected_jobs=["train-01"],
        affected_nodes=["node-005"],
        root_cause=RootCause(
            entity_type="node" if culprit else "job",
            entity_id="node-005" if culprit else "train-01",
            confidence=0.6,
        ),
    )


async def test_a_hang_restarts_without_the_node_of_the_first_stalled_rank():
    p = await plan(hang_incident(True), STALLED)
    assert steps(p) == [("swap-spare", {"job": "train-01", "node": "node-005"})]
    assert "first-stalled rank ran on node-005" in p.rationale


async def test_a_hang_restarts_from_the_checkpoint_until_swap_spare_exists():
    p = await plan(hang_incident(True), STALLED, BASIC)
    assert steps(p) == [("restart-from-checkpoint", {"job": "train-01"})]


async def test_a_hang_with_no_first_stalled_rank_restarts_and_blames_no_node():
    p = await plan(hang_incident(False), STALLED)
    assert steps(p) == [("restart-from-checkpoint", {"job": "train-01"})]
    assert "no node to blame" in p.rationale


def straggler(gpus: list[str]) -> Incident:
    return incident(
        "throughput",
        ["throughput.straggler"],
        affected_jobs=["train-01"],
        affected_nodes=["node-004"],
        affected_gpus=gpus,
    )


async def test_one_slow_node_is_swapped_for_a_spare():
    p = await plan(straggler(["node-004/6"]), RUNNING)
    assert steps(p) == [("swap-spare", {"job": "train-01", "node": "node-004"})]


async def test_one_slow_gpu_without_swap_spare_is_isolated_and_the_job_restarted_without_it():
    p = await plan(straggler(["node-004/6"]), RUNNING, BASIC)
    assert steps(p) == [
        ("isolate-gpu", {"node": "node-004", "gpu": 6}),
        ("restart-from-checkpoint", {"job": "train-01"}),
    ]


async def test_a_uniform_slowdown_is_the_workloads_and_evicts_nothing():
    p = await plan(incident("throughput", ["throughput.workload"], affected_jobs=["train-01"]), RUNNING)
    assert p.disposition == "no_action" and p.actions == []


async def test_a_shared_switch_is_marked_suspect_and_escalated_without_touching_its_nodes():
    nodes = [f"node-{i:03d}" for i in range(33, 65)]
    p = await plan(
        incident(
            "switch",
            ["shared.switch"],
            entity="leaf-02",
            affected_nodes=nodes,
            affected_jobs=["job-a", "job-b"],
        ),
        Facts(node="node-033"),
    )
    assert p.disposition == "escalate" and p.actions == []
    assert "mark it suspect" in p.rationale and "network owner" in p.rationale
    assert "keep the healthy nodes under it in service" in p.rationale


async def test_a_repeated_offender_keeps_its_containment_and_goes_to_a_person():
    inc = incident("ecc", ["ecc.dbe", "suspected_bad_hardware"])
    inc.timeline.append(
        TimelineEntry(what="repeated offender", detail="node-005/gpu2: incident #3 within 24 h")
    )
    p = await plan(inc, STALLED, WITH_SWAP | {"escalate"})
    assert p.disposition == "escalate"
    assert [a.runbook for a in p.actions] == ["isolate-gpu", "restart-from-checkpoint", "escalate"]
    assert p.actions[-1].params["node"] == "node-005" and p.actions[-1].params["gpu"] == 2
    assert "suspected bad hardware" in str(p.actions[-1].params["summary"])
    assert "Suspected bad hardware" in p.rationale and "incident #3" in p.rationale


async def test_xid_incidents_still_follow_the_catalog():
    p = await plan(
        incident("xid", [], xids=[79]), Facts(node="node-003", gpu=3, job="train-01", job_state="stalled")
    )
    assert [a.runbook for a in p.actions] == ["isolate-gpu", "restart-from-checkpoint"]


async def test_pages_pending_retirement_on_an_idle_gpu_get_a_reset_that_says_so():
    p = await plan(
        incident("ecc", ["ecc.retired_pages_soft", "ecc.retired_pending"]),
        Facts(node="node-014", gpu=7),
        {"reset-gpu"},
    )
    assert [a.runbook for a in p.actions] == ["reset-gpu"]
    assert "pages are pending retirement" in p.rationale and "row remap" not in p.rationale


async def test_a_node_wide_fault_swaps_the_node_out_with_one_ticket_and_queues_its_reboot():
    inc = incident("node", ["node_wide"], entity="node-011", xids=[74])
    p = await plan(inc, Facts(node="node-011", job="train-02", job_state="stalled"), WITH_SWAP | {"escalate"})
    assert [a.runbook for a in p.actions] == ["swap-spare", "escalate"]
    assert p.actions[0].params == {"job": "train-02", "node": "node-011"}
    assert [a.runbook for a in p.deferred] == ["drain-and-reboot-node"]
    assert not any(a.runbook == "isolate-gpu" for a in p.actions)


async def test_a_hang_of_a_job_already_restarting_restarts_nothing_more():
    # The job's restart for an earlier fault is under way: a second restart would discard it.
    inc = incident("hang", ["hang.no_culprit"], affected_jobs=["train-01"])
    p = await plan(inc, Facts(node="node-005", job="train-01", job_state="restarting"))
    assert p.actions == [] and p.disposition == "no_action"
    hung = await plan(inc, Facts(node="node-005", job="train-01", job_state="running"))
    assert [a.runbook for a in hung.actions] == ["restart-from-checkpoint"]
