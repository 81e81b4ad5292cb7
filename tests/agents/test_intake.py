"""Incident records from correlated events: what each kind opens, and what a storm cannot do to them."""

from __future__ import annotations

from agents.correlator import Correlation, Correlator
from agents.intake import MAX_EVENT_IDS, MAX_JOIN_NOTES, absorb, cancel, fold, open_incident
from tests.agents.factories import T0, ecc, fabric, hang, slow, xid


def opened(event, correlator: Correlator | None = None):
    corr = (correlator or Correlator(fabric=fabric())).assign(event)
    return open_incident(corr.incident_id, event, corr, T0), corr


def test_an_ecc_incident_names_the_gpu_its_counters_and_findings():
    inc, _ = opened(ecc(["dbe", "remap_pending"], node="node-005", gpu=2, dbe_volatile=1, remap_pending=1))
    assert inc.kind == "ecc" and inc.severity == "critical"
    assert inc.root_cause is not None and inc.root_cause.entity_id == "node-005/gpu2"
    assert inc.findings == ["ecc.dbe", "ecc.remap_pending"] and inc.affected_gpus == ["node-005/2"]
    assert "DBE volatile/aggregate 1/0" in inc.timeline[0].detail


def test_a_hang_with_a_first_stalled_rank_blames_its_node_and_one_without_blames_the_job():
    culprit, _ = opened(hang("train-01", ["node-005"], ranks=[34]))
    assert culprit.root_cause is not None and culprit.root_cause.entity_type == "node"
    assert culprit.findings == ["hang", "hang.culprit"] and culprit.affected_gpus == ["node-005/2"]
    together, _ = opened(hang("train-02", ["node-009", "node-010"], ranks=list(range(16)), total=16))
    assert together.root_cause is not None and together.root_cause.entity_type == "job"
    assert together.findings == ["hang"]


def test_a_shared_switch_incident_lists_its_evidence_and_the_incidents_it_folds():
    c = Correlator(fabric=fabric())
    c.assign(hang("job-a", ["node-040"]))
    inc, corr = opened(hang("job-b", ["node-050"], t=3), c)
    assert (
        inc.kind == "switch"
        and inc.entity == "leaf-02"
        and inc.title.startswith("Leaf switch leaf-02 suspected")
    )
    assert inc.folded == list(corr.shared.folds) and len(inc.root_cause.evidence) == 2
    assert inc.affected_jobs == ["job-a", "job-b"]


def test_a_storm_of_joins_keeps_the_record_small_and_counts_everything():
    c = Correlator()
    first = xid(95)
    inc, _ = opened(first, c)
    events = [xid(95, t=i, message=f"line {i}", eid=f"e{i}") for i in range(1, 3000)]
    events += [ecc(["sbe_rate"], t=i, eid=f"s{i}") for i in range(500)]
    absorb(inc, events, [c.assign(e) for e in events], T0)
    # Jobs joining a shared-part incident one after another: each join writes a note, up to a cap.
    joins = [slow(f"job-{i}", switches=["leaf-02"], t=i) for i in range(200)]
    absorb(inc, joins, [Correlation(inc.id, "joined", f"job-{i} slower") for i in range(200)], T0)
    assert inc.event_count == 1 + len(events) + len(joins)
    assert len(inc.event_ids) == MAX_EVENT_IDS
    assert sum(1 for e in inc.timeline if e.what == "event joined") == MAX_JOIN_NOTES + 1
    assert len(inc.affected_jobs) == 200


def test_a_cancel_resolves_an_incident_nothing_was_done_for_and_only_notes_one_that_acted():
    inc, _ = opened(slow("job-a", signature="workload"))
    cancel(inc, "job-a is back at its baseline", T0)
    assert inc.status == "resolved"
    acting, _ = opened(slow("job-b", signature="workload"))
    acting.status = "mitigating"
    cancel(acting, "back at baseline", T0)
    assert acting.status == "mitigating" and "its actions stand" in acting.timeline[-1].detail


def test_folding_suppresses_an_idle_incident_and_links_one_already_acting():
    idle, _ = opened(hang("job-a", ["node-040"]))
    fold(idle, into="inc-switch", why="leaf-02", now=T0)
    assert idle.status == "suppressed" and idle.folded_into == "inc-switch"
    busy, _ = opened(hang("job-c", ["node-041"]))
    busy.status = "mitigated"
    fold(busy, into="inc-switch", why="leaf-02", now=T0)
    assert busy.status == "mitigated" and busy.folded_into == "inc-switch"


def test_new_evidence_reopens_an_incident_judged_benign_and_a_repeat_does_not():
    c = Correlator(fabric=fabric())
    inc, _ = opened(xid(63, node="node-013", pci="0000:5d:00.0"), c)
    inc.status = "suppressed"  # the plan for the driver's Xid 63 line alone: nothing to do

    repeat = xid(63, node="node-013", pci="0000:5d:00.0", t=5, eid="again")
    absorb(inc, [repeat], [c.assign(repeat)], T0)
    assert inc.status == "suppressed"

    counter = ecc(["remap_pending"], node="node-013", gpu=3, t=10, remap_pending=1)
    absorb(inc, [counter], [c.assign(counter)], T0)
    assert inc.status == "open" and inc.plan is None
    assert inc.timeline[-2].what == "reopened" and "remap_pending" in inc.timeline[-2].detail
