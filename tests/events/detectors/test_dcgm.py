"""The DCGM detector on the fleet twin's dcgm-exporter output."""

from __future__ import annotations

from datetime import timedelta

from events.detectors import DcgmDetector, Sample
from events.models import EccEvent, XidEvent


def ecc_events(events: list) -> list[EccEvent]:
    return [e for e in events if isinstance(e, EccEvent)]


async def test_a_healthy_fleet_reports_nothing(watched):
    assert await watched.scrape() == []
    watched.run(60)
    assert await watched.scrape() == []


async def test_a_double_bit_error_is_reported_with_its_counters_and_xids(watched):
    await watched.scrape()
    watched.twin.inject_ecc("node-005", 2, "dbe")
    events = await watched.scrape()
    [ecc] = ecc_events(events)
    assert ecc.node == "node-005" and ecc.gpu == 2 and ecc.pci_bus_id == "0000:3a:00.0"
    assert ecc.findings == ["dbe", "remap_pending", "remap_uncorrectable"]
    assert (ecc.dbe_volatile, ecc.dbe_aggregate, ecc.remap_pending) == (1, 1, 1)
    assert ecc.source == "dcgm" and "double-bit" in ecc.reason
    assert sorted(e.xid for e in events if isinstance(e, XidEvent)) == [48, 63]
    assert await watched.scrape() == []  # the same counters again: nothing new


async def test_a_reset_is_a_drop_to_zero_not_an_error_and_clears_the_pending_remap(watched):
    await watched.scrape()
    watched.twin.inject_ecc("node-005", 2, "dbe")
    await watched.scrape()
    watched.twin.telemetry.gpu_reset("node-005", 2)
    [cleared] = ecc_events(await watched.scrape())
    assert cleared.findings == ["remap_pending_cleared"]
    assert cleared.dbe_volatile == 0 and cleared.dbe_aggregate == 1
    watched.twin.telemetry.node_rebooted("node-005")
    assert await watched.scrape() == []


async def test_single_bit_errors_count_only_above_the_rate(watched):
    await watched.scrape()
    watched.twin.inject_ecc("node-002", 0, "sbe_burst", count=3)
    watched.run(60)
    assert ecc_events(await watched.scrape()) == []
    watched.twin.inject_ecc("node-002", 0, "sbe_burst", count=500)
    watched.run(60)
    [burst] = ecc_events(await watched.scrape())
    assert burst.findings == ["sbe_rate"]


async def test_retired_pages_report_each_limit_once(watched):
    await watched.scrape()
    watched.twin.inject_ecc("node-001", 1, "retired_pages", count=15)
    [soft] = ecc_events(await watched.scrape())
    assert "retired_pages_soft" in soft.findings and "retired_pending" in soft.findings
    watched.twin.inject_ecc("node-001", 1, "retired_pages", count=10)
    assert ecc_events(await watched.scrape()) == []
    watched.twin.inject_ecc("node-001", 1, "retired_pages", count=40)
    [hard] = ecc_events(await watched.scrape())
    assert hard.findings == ["retired_pages_hard"]


async def test_a_row_remap_failure_and_exhausted_rows_are_reported(watched):
    await watched.scrape()
    watched.twin.inject_ecc("node-009", 4, "remap_failure")
    events = await watched.scrape()
    assert ecc_events(events)[0].findings == ["remap_failure"]
    assert [e.xid for e in events if isinstance(e, XidEvent)] == [64]
    watched.twin.telemetry.counters("node-009", 4).remap_uncorrectable = 512
    [rows] = ecc_events(await watched.scrape())
    assert "remap_rows_exhausted" in rows.findings


async def test_a_gpu_that_fell_off_the_bus_disappears_without_an_event(watched):
    await watched.scrape()
    watched.twin.inject_xid("node-003", 3, 79)
    events = await watched.scrape()
    assert events == []  # dcgm-exporter no longer reports it; the kernel log is the other path


async def test_on_first_sight_states_are_reported_and_history_is_not(watched):
    watched.twin.telemetry.counters("node-004", 1).dbe_aggregate = 7  # an old error, long reset
    watched.twin.inject_ecc("node-004", 2, "remap_pending")
    events = ecc_events(await watched.scrape())
    assert [(e.gpu, e.findings) for e in events] == [(2, ["remap_pending"])]
    restarted = DcgmDetector("sim-a")
    again = ecc_events(restarted.observe(await watched.source.scrape(), watched.twin.now()))
    assert [e.event_id for e in again] == [e.event_id for e in events]  # JetStream dedupes it


async def test_the_windowed_xid_count_rises_per_occurrence_and_falls_silently(watched):
    await watched.scrape()
    watched.twin.inject_xid("node-013", 5, 43, pid=4242, process="python3")
    [first] = await watched.scrape()
    assert isinstance(first, XidEvent) and first.xid == 43 and first.gpu == 5
    watched.twin.inject_xid("node-013", 5, 43, pid=4242, process="python3")
    [second] = await watched.scrape()
    assert second.event_id != first.event_id
    watched.twin.advance(6 * 60)  # out of the exporter's 5-minute window
    assert await watched.scrape() == []


def test_exporters_without_the_xid_count_report_the_last_xid_gauge_changing(watched):
    now = watched.twin.now()
    labels = {"gpu": "1", "Hostname": "node-020", "pci_bus_id": "00000000:2A:00.0"}
    d = DcgmDetector("sim-a")
    assert d.observe([Sample("DCGM_FI_DEV_XID_ERRORS", labels, 0.0)], now) == []
    [event] = d.observe([Sample("DCGM_FI_DEV_XID_ERRORS", labels, 119.0)], now + timedelta(seconds=30))
    assert isinstance(event, XidEvent) and event.xid == 119 and event.pci_bus_id == "0000:2a:00.0"


def test_samples_without_a_node_or_gpu_are_skipped(watched):
    d = DcgmDetector("sim-a")
    bad = [
        Sample("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", {"gpu": "x", "Hostname": "n"}, 3.0),
        Sample("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", {"gpu": "0"}, 3.0),
    ]
    assert d.observe(bad, watched.twin.now()) == []
