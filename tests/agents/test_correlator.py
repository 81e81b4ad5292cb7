from datetime import UTC, datetime, timedelta

from agents.correlator import Correlator
from events.models import XidEvent
from tests.agents.factories import ecc, fabric, hang, slow
from tests.agents.factories import xid as xid_at

T0 = datetime(2026, 11, 29, 7, 35, tzinfo=UTC)


def xid(code: int, *, node="node-003", pci="0000:5d:00.0", at=0.0, eid=None, **extra) -> XidEvent:
    return XidEvent(
        event_id=eid or f"e-{code}-{node}-{pci}-{at}",
        time=T0 + timedelta(seconds=at),
        cluster="sim-a",
        source="kmsg",
        node=node,
        pci_bus_id=pci,
        xid=code,
        **extra,
    )


def test_the_first_xid_on_a_gpu_opens_an_incident():
    assert Correlator().assign(xid(79)).new


def test_the_same_xid_on_the_same_gpu_within_the_window_is_a_duplicate():
    c = Correlator(window_s=600)
    first = c.assign(xid(79))
    again = c.assign(xid(79, at=30))
    assert again.kind == "duplicate" and again.incident_id == first.incident_id


def test_after_the_window_the_same_xid_opens_a_new_incident():
    c = Correlator(window_s=600)
    first = c.assign(xid(79))
    later = c.assign(xid(79, at=601))
    assert later.new and later.incident_id != first.incident_id


def test_a_steady_storm_keeps_extending_the_window():
    c = Correlator(window_s=60)
    first = c.assign(xid(95))
    ids = {c.assign(xid(95, at=t)).incident_id for t in range(10, 600, 10)}
    assert ids == {first.incident_id}


def test_another_xid_on_the_same_gpu_joins_its_incident():
    c = Correlator()
    first = c.assign(xid(48))
    joined = c.assign(xid(63, at=1))
    assert joined.kind == "joined" and joined.incident_id == first.incident_id


def test_xid_45_caused_by_a_previous_xid_joins_that_incident_instead_of_opening_one():
    c = Correlator()
    first = c.assign(xid(79))
    follow = c.assign(xid(45, at=2, caused_by_xid=79))
    assert follow.kind == "joined" and follow.incident_id == first.incident_id
    assert "follows Xid 79" in follow.reason


def test_xid_45_on_another_gpu_of_the_same_node_joins_the_open_incident():
    c = Correlator()
    first = c.assign(xid(79))
    follow = c.assign(xid(45, pci="0000:18:00.0", at=2))
    assert follow.incident_id == first.incident_id


def test_xid_45_alone_opens_its_own_incident():
    assert Correlator().assign(xid(45)).new


def test_different_gpus_and_nodes_get_different_incidents():
    c = Correlator()
    a = c.assign(xid(79))
    b = c.assign(xid(79, pci="0000:18:00.0"))
    d = c.assign(xid(79, node="node-004"))
    assert len({a.incident_id, b.incident_id, d.incident_id}) == 3


# -- every fault family (issue 3) ------------------------------------------------------------------


def test_xid_94_beside_a_double_bit_error_joins_its_incident():
    c = Correlator()
    first = c.assign(xid_at(48))
    beside = c.assign(xid_at(94, t=1))
    assert beside.kind == "joined" and beside.incident_id == first.incident_id
    assert "beside" in beside.reason


def test_a_storm_of_xid_95_from_one_gpu_is_one_incident():
    c = Correlator()
    results = [c.assign(xid_at(95, t=i * 0.5)) for i in range(2000)]
    assert results[0].new
    assert {r.incident_id for r in results} == {results[0].incident_id}
    assert all(r.kind == "duplicate" for r in results[1:])


def test_xid_154_joins_its_gpu_and_a_later_none_cancels_the_fault():
    c = Correlator()
    first = c.assign(xid_at(119))
    summary = c.assign(xid_at(154, t=1, recovery_action="GPU Reset Required"))
    assert summary.kind == "joined" and summary.incident_id == first.incident_id
    later = c.assign(xid_at(154, t=30, recovery_action="None"))
    assert later.kind == "cancel" and later.incident_id == first.incident_id


def test_a_double_bit_ecc_error_joins_the_xid_48_of_the_same_gpu_named_by_index_and_pci():
    c = Correlator()
    first = c.assign(xid_at(48, gpu=3))
    counters = c.assign(ecc(["dbe", "remap_pending"], gpu=3, t=5))
    assert counters.kind == "joined" and counters.incident_id == first.incident_id
    assert c.assign(ecc(["dbe", "remap_pending"], gpu=3, t=35)).kind == "duplicate"


def test_a_pending_row_remap_that_clears_cancels_its_incident_and_is_ignored_without_one():
    c = Correlator()
    opened = c.assign(ecc(["remap_pending"], node="node-010", gpu=1, pci="0000:2a:00.0"))
    assert opened.new and opened.incident_kind == "ecc"
    cleared = c.assign(ecc(["remap_pending_cleared"], node="node-010", gpu=1, pci="0000:2a:00.0", t=60))
    assert cleared.kind == "cancel" and cleared.incident_id == opened.incident_id
    assert c.assign(ecc(["remap_pending_cleared"], node="node-011", t=60)).kind == "ignored"


def test_the_same_gpu_in_three_incidents_a_day_is_a_suspected_bad_part():
    c = Correlator(window_s=600)
    first = c.assign(ecc(["remap_pending"], t=0))
    second = c.assign(ecc(["remap_pending"], t=3600))
    third = c.assign(ecc(["remap_pending"], t=7200))
    assert first.new and second.new and third.new
    assert first.repeat is None and second.repeat is None
    assert third.repeat is not None and third.repeat.count == 3
    assert "suspected bad hardware" in third.repeat.summary


def test_a_gpu_falling_off_the_bus_twice_in_a_week_trips_the_catalog_rule():
    c = Correlator(window_s=600)
    assert c.assign(xid_at(79)).repeat is None
    again = c.assign(xid_at(79, t=2 * 86400))
    assert again.new and again.repeat is not None and "catalog rule for Xid 79" in again.repeat.rule


def test_a_benign_application_xid_never_escalates_however_often_it_repeats():
    c = Correlator(window_s=600)
    results = [c.assign(xid_at(43, t=i * 700)) for i in range(12)]
    assert all(r.new for r in results)
    assert all(r.repeat is None for r in results)


def test_a_hang_whose_first_stalled_rank_sits_on_a_gpu_that_failed_joins_that_incident():
    c = Correlator(fabric=fabric())
    fault = c.assign(xid_at(79, node="node-005", gpu=2, pci="0000:3a:00.0"))
    stuck = c.assign(hang("train-01", ["node-005"], ranks=[34], t=40))
    assert stuck.kind == "joined" and stuck.incident_id == fault.incident_id
    assert "hardware incident" in stuck.reason


def test_a_lone_hang_opens_a_held_incident_and_resuming_cancels_it():
    c = Correlator(fabric=fabric())
    stuck = c.assign(hang("train-01", ["node-005"], ranks=[34]))
    assert stuck.new and stuck.hold and stuck.incident_kind == "hang" and stuck.shared is None
    assert c.assign(hang("train-01", ["node-005"], ranks=[34], t=5, eid="again")).kind == "duplicate"
    resumed = c.assign(hang("train-01", [], ranks=[], t=90, resumed=True))
    assert resumed.kind == "cancel" and resumed.incident_id == stuck.incident_id


def test_concurrent_hangs_of_jobs_under_one_leaf_become_one_switch_incident_that_folds_the_first():
    c = Correlator(fabric=fabric())
    a = c.assign(hang("job-a", ["node-040"], t=0))
    assert a.new and a.shared is None
    b = c.assign(hang("job-b", ["node-050"], t=3))
    assert b.new and b.incident_kind == "switch" and b.shared is not None
    assert b.shared.part == ("switch", "leaf-02")
    assert b.shared.folds == (a.incident_id,)
    later = c.assign(slow("job-c", switches=["leaf-02"], nodes=["node-060"], t=9))
    assert later.kind == "joined" and later.incident_id == b.incident_id
    again = c.assign(hang("job-a", ["node-040"], t=12, eid="a-again"))
    assert again.incident_id == b.incident_id  # the folded job's later events follow it
    elsewhere = c.assign(hang("job-d", ["node-100"], t=15))
    assert elsewhere.new and elsewhere.incident_kind == "hang"


def test_a_network_slowdown_under_a_single_leaf_names_the_switch_on_its_own():
    c = Correlator(fabric=fabric())
    verdict = c.assign(slow("train-02", switches=["leaf-03"], nodes=["node-065", "node-066"]))
    assert verdict.new and verdict.incident_kind == "switch" and verdict.shared is not None
    assert verdict.shared.part == ("switch", "leaf-03") and verdict.shared.folds == ()


def test_jobs_slowed_across_several_leaves_are_intersected_to_the_one_they_share():
    c = Correlator(fabric=fabric())
    first = c.assign(slow("job-a", switches=["leaf-01", "leaf-02"], nodes=["node-010", "node-040"]))
    assert first.new and first.shared is None and first.incident_kind == "throughput"
    second = c.assign(slow("job-b", switches=["leaf-02", "leaf-03"], nodes=["node-041", "node-070"], t=30))
    assert second.shared is not None and second.shared.part == ("switch", "leaf-02")
    assert second.shared.folds == (first.incident_id,)


def test_stragglers_of_two_jobs_in_one_rack_blame_the_rack_not_the_switch():
    c = Correlator(fabric=fabric())
    c.assign(slow("job-a", signature="straggler", suspects=["node-009"]))
    second = c.assign(slow("job-b", signature="straggler", suspects=["node-011"], t=20))
    assert second.shared is not None and second.shared.part == ("rack", "rack-03")


def test_nvlink_errors_on_two_nodes_of_one_nvlink_domain_blame_the_domain():
    c = Correlator(fabric=fabric(clique=18))
    first = c.assign(xid_at(74, node="node-002"))
    assert first.new and first.hold and first.shared is None
    second = c.assign(xid_at(74, node="node-007", t=2))
    assert second.shared is not None and second.shared.part == ("nvlink_domain", "nvl-01")
    assert second.shared.folds == (first.incident_id,)


def test_an_nvlink_error_on_an_hgx_node_is_a_gpu_incident_not_a_domain_one():
    # The NVLink domain of an HGX node is the node: no topology wait; the incident only waits the
    # grouping moment every hardware Xid waits for the node's other GPUs (node-wide faults).
    c = Correlator(fabric=fabric())
    only = c.assign(xid_at(74, node="node-002"))
    assert only.new and only.incident_kind == "xid" and only.shared is None


def test_memory_stays_bounded_over_a_long_storm_of_many_gpus():
    c = Correlator(window_s=60, max_entries=5_000)
    for i in range(60_000):
        c.assign(xid_at(95, node=f"node-{i % 997:03d}", pci=f"0000:{i % 8:02x}:00.0", t=i * 0.05))
    assert len(c) <= 5_000
    assert len(c.offenders) <= 100_000


def test_a_hang_on_a_node_whose_gpu_failed_within_the_hour_is_still_blamed_on_that_fault():
    c = Correlator(window_s=600, fabric=fabric())
    fault = c.assign(ecc(["dbe"], node="node-120", gpu=0))
    # Our own drain and reset of node-120 twenty minutes later; the job on it stalls and hangs.
    later = c.assign(hang("job-10", ["node-120"], ranks=[88], t=1200))
    assert later.kind == "joined" and later.incident_id == fault.incident_id
    much_later = c.assign(hang("job-10", ["node-120"], ranks=[88], t=3 * 3600, eid="next-day"))
    assert much_later.new


# Only a hardware fault may explain a hang. NVIDIA's Xid catalog: 43 is IGNORE (the GPU stopped
# processing a channel; software fault, GPU healthy), 31 and 13 are RESTART_APP (the application's
# page fault / exception). None of them can stall a healthy job's collective; the hang is its own.


def test_a_hang_never_joins_an_application_xid_on_its_node():
    for code in (43, 31, 13):
        c = Correlator(window_s=600, fabric=fabric())
        benign = c.assign(xid_at(code, node="node-005", gpu=2, pci="0000:3a:00.0"))
        stuck = c.assign(hang("train-01", ["node-005"], ranks=[34], t=180))
        assert stuck.new and stuck.incident_kind == "hang", code
        assert stuck.incident_id != benign.incident_id


def test_an_application_xid_after_a_hardware_fault_does_not_hide_it_from_a_later_hang():
    c = Correlator(window_s=600, fabric=fabric())
    fault = c.assign(xid_at(79, node="node-005", gpu=2, pci="0000:3a:00.0"))
    c.assign(xid_at(43, node="node-005", gpu=5, pci="0000:bb:00.0", t=30))
    stuck = c.assign(hang("train-01", ["node-005"], ranks=[34], t=90))
    assert stuck.kind == "joined" and stuck.incident_id == fault.incident_id


def test_a_pending_row_remap_explains_no_hang():
    # DCGM: a pending remap is applied at the next reset; the GPU keeps working until then.
    c = Correlator(window_s=600, fabric=fabric())
    c.assign(ecc(["remap_pending"], node="node-120", gpu=0))
    stuck = c.assign(hang("job-10", ["node-120"], ranks=[88], t=120))
    assert stuck.new and stuck.incident_kind == "hang"


# Node-wide faults (NVIDIA's guidance, shared/domain: the same Xid 74/79/119 on all eight GPUs of a
# node points at the NVSwitch, baseboard, power or driver): one node-level incident, not eight.


def test_the_same_hardware_xid_on_most_gpus_of_a_node_is_one_node_incident():
    c = Correlator(window_s=600)
    pcis = [f"0000:{b:02x}:00.0" for b in (0x18, 0x2A, 0x3A, 0x5D, 0x9A, 0xAB, 0xBA, 0xDB)]
    results = [c.assign(xid(74, node="node-011", pci=pci, at=i * 0.2)) for i, pci in enumerate(pcis)]
    first_gpus = results[:4]
    assert all(r.new and r.hold for r in first_gpus)  # each waits for its neighbours
    whole = results[4]
    assert whole.new and whole.incident_kind == "node"
    assert set(whole.folds) == {r.incident_id for r in first_gpus}
    assert all(r.kind == "joined" and r.incident_id == whole.incident_id for r in results[5:])
    again = c.assign(xid(74, node="node-011", pci=pcis[0], at=30, eid="again"))
    assert again.incident_id == whole.incident_id


def test_two_gpus_of_a_node_failing_are_two_gpu_incidents():
    c = Correlator(window_s=600)
    a = c.assign(xid(79, node="node-011", pci="0000:18:00.0"))
    b = c.assign(xid(79, node="node-011", pci="0000:2a:00.0", at=5))
    assert a.new and b.new and a.incident_id != b.incident_id and b.incident_kind == "xid"


def test_application_xids_on_every_gpu_of_a_node_are_not_a_node_fault():
    # Xid 31 is RESTART_APP: the job's own fault; its storms are grouped by job, never blamed on the node.
    c = Correlator(window_s=600)
    kinds = {
        c.assign(xid(31, node="node-011", pci=f"0000:{b:02x}:00.0", at=i)).incident_kind
        for i, b in enumerate((0x18, 0x2A, 0x3A, 0x5D, 0x9A))
    }
    assert kinds == {"xid"}


def test_a_whole_gang_stall_joins_the_one_hardware_fault_open_on_its_nodes():
    c = Correlator(window_s=600, fabric=fabric())
    fault = c.assign(xid_at(95, node="node-004", gpu=2, pci="0000:3a:00.0"))
    gang = [f"node-00{n}" for n in range(1, 9)]
    stuck = c.assign(hang("train-01", gang, ranks=list(range(64)), t=40))
    assert stuck.kind == "joined" and stuck.incident_id == fault.incident_id
