from datetime import UTC, datetime, timedelta

from agents.correlator import Correlator
from events.models import XidEvent

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
