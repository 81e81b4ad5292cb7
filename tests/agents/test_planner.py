import pytest

from agents.facts import Facts
from agents.planner import RulesPlanner
from events.incident import Incident


def incident(*xids: int, kind: str = "xid", recovery_action: str | None = None) -> Incident:
    return Incident(id="inc-1", cluster="sim-a", kind=kind, xids=list(xids), recovery_action=recovery_action)


BUSY = Facts(node="node-003", gpu=3, job="train-01", job_state="stalled")
IDLE = Facts(node="node-013", gpu=5)


async def plan(inc: Incident, facts: Facts):
    return await RulesPlanner().plan(inc, facts)


async def test_xid_79_under_a_stalled_job_isolates_the_gpu_and_restarts_the_job():
    p = await plan(incident(79), BUSY)
    assert p.disposition == "mitigate"
    assert [(a.runbook, a.params.get("gpu") or a.params.get("job")) for a in p.actions] == [
        ("isolate-gpu", 3),
        ("restart-from-checkpoint", "train-01"),
    ]


async def test_xid_79_on_an_idle_gpu_only_isolates_it():
    p = await plan(incident(79), IDLE)
    assert [a.runbook for a in p.actions] == ["isolate-gpu"]


@pytest.mark.parametrize("code", [13, 31, 43, 68, 109])
async def test_application_xids_never_touch_hardware(code):
    p = await plan(incident(code), BUSY)
    assert all(a.runbook not in ("isolate-gpu",) for a in p.actions)
    assert "no hardware action" in p.rationale or p.disposition == "no_action"


async def test_an_application_xid_restarts_a_job_it_stalled():
    p = await plan(incident(13), BUSY)
    assert [a.runbook for a in p.actions] == ["restart-from-checkpoint"]


async def test_xid_43_on_a_running_job_needs_nothing():
    p = await plan(incident(43), Facts(node="n", gpu=1, job="train-02", job_state="running"))
    assert p.disposition == "no_action" and p.actions == []


async def test_a_sympathetic_xid_45_is_planned_by_its_cause():
    p = await plan(incident(45, 79), BUSY)
    assert p.actions[0].runbook == "isolate-gpu"


async def test_xid_154_follows_the_recovery_action_it_names():
    none = await plan(incident(154, recovery_action="None"), BUSY)
    reset = await plan(incident(154, recovery_action="GPU Reset Required"), BUSY)
    assert none.disposition == "no_action"
    assert reset.disposition == "mitigate"


async def test_an_unknown_code_goes_to_a_person():
    p = await plan(incident(9999), BUSY)
    assert p.disposition == "escalate" and p.actions == []


async def test_a_hardware_xid_without_a_known_gpu_index_is_escalated():
    p = await plan(incident(79), Facts(node="node-003"))
    assert p.disposition == "escalate" and "index" in p.rationale


async def test_an_nvswitch_sxid_is_escalated_not_looked_up_as_an_xid():
    p = await plan(incident(12, kind="sxid"), BUSY)
    assert p.disposition == "escalate" and "SXid" in p.rationale


async def test_a_gpu_that_repeats_an_application_xid_is_taken_out_for_diagnostics():
    # The catalog's rule for Xid 13 (5 in 24 h on one GPU -> run diagnostics) tripped: restarting the
    # job onto the same GPU would crash it again; contain the GPU and hand it to people.
    inc = incident(13)
    inc.findings.append("suspected_bad_hardware")
    p = await RulesPlanner(runbooks={"isolate-gpu", "restart-from-checkpoint", "escalate"}).plan(inc, BUSY)
    assert [a.runbook for a in p.actions] == ["isolate-gpu", "restart-from-checkpoint", "escalate"]
    assert p.actions[0].params["gpu"] == 3 and p.disposition == "escalate"


async def test_a_gpu_suspected_bad_is_isolated_before_its_job_restarts():
    # Xid 94 (contained error) repeated on one GPU within a day: suspected bad hardware. Restarting
    # the job onto that same GPU would crash it again: isolate first, then restart, then a ticket.
    inc = incident(94)
    inc.findings.append("suspected_bad_hardware")
    p = await RulesPlanner(runbooks={"isolate-gpu", "restart-from-checkpoint", "escalate"}).plan(inc, BUSY)
    assert [a.runbook for a in p.actions] == ["isolate-gpu", "restart-from-checkpoint", "escalate"]
    assert p.actions[0].params["gpu"] == 3 and p.disposition == "escalate"


async def test_the_catalogs_repair_is_queued_with_the_incident():
    # NVIDIA's catalog: 79 RESTART_BM (reboot the node), 95 RESET_GPU. Contained now, repaired later.
    runbooks = {"isolate-gpu", "restart-from-checkpoint", "reset-gpu", "drain-and-reboot-node"}
    off_bus = await RulesPlanner(runbooks=runbooks).plan(incident(79), BUSY)
    assert [(a.runbook, a.params) for a in off_bus.deferred] == [
        ("drain-and-reboot-node", {"node": BUSY.node})
    ]
    uncontained = await RulesPlanner(runbooks=runbooks).plan(incident(95), BUSY)
    assert [a.runbook for a in uncontained.deferred] == ["reset-gpu"]
    assert [a.runbook for a in uncontained.actions] == ["isolate-gpu", "restart-from-checkpoint"]


async def test_a_contact_support_xid_contains_the_gpu_and_opens_a_ticket():
    # NVIDIA's catalog: 56, 57, 58, 61 CONTACT_SUPPORT. The GPU's state is unknown: contain it.
    runbooks = {"isolate-gpu", "restart-from-checkpoint", "escalate"}
    for code in (56, 57, 58, 61):
        p = await RulesPlanner(runbooks=runbooks).plan(incident(code), BUSY)
        assert [a.runbook for a in p.actions] == ["isolate-gpu", "restart-from-checkpoint", "escalate"], code
        assert p.disposition == "escalate"
