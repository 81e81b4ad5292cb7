"""The twin's DCGM counters and heartbeats: faults move them the way real hardware does."""

from __future__ import annotations

import pytest

from fleet import FleetError, FleetSpec, FleetTwin
from fleet.telemetry import CLOCK_HW_THERMAL, CLOCK_SW_THERMAL, RankBeat


def beats_of(twin: FleetTwin, seconds: float) -> list[RankBeat]:
    got: list[RankBeat] = []
    stop = twin.subscribe_heartbeats(got.append)
    twin.advance(seconds)
    stop()
    return got


def test_a_double_bit_error_prints_xid_48_and_63_moves_the_counters_and_stalls_the_job(twin):
    lines = twin.inject_ecc("node-005", 2, "dbe")
    assert [" 48, " in lines[0], " 63, " in lines[1]] == [True, True]
    c = twin.telemetry.counters("node-005", 2)
    assert (c.dbe_volatile, c.dbe_aggregate, c.remap_uncorrectable, c.remap_pending) == (1, 1, 1, 1)
    assert twin.job("train-01").state == "stalled"
    assert twin.gpu("node-005", 2).health == "error"


def test_a_reset_clears_volatile_counters_and_applies_the_pending_remap_but_keeps_history(twin):
    twin.inject_ecc("node-005", 2, "dbe")
    twin.inject_ecc("node-005", 2, "sbe_burst", count=40)
    twin.telemetry.gpu_reset("node-005", 2)
    c = twin.telemetry.counters("node-005", 2)
    assert (c.dbe_volatile, c.sbe_volatile, c.remap_pending) == (0, 0, 0)
    assert (c.dbe_aggregate, c.sbe_aggregate, c.remap_uncorrectable) == (1, 40, 1)


def test_faults_without_a_kernel_line_go_to_the_history(twin):
    assert twin.inject_ecc("node-002", 0, "sbe_burst", count=10) == []
    assert twin.history[-1].kind == "fault" and "sbe_burst x10" in twin.history[-1].text


def test_throttling_sets_the_thermal_clock_reasons_and_slows_the_whole_job(twin):
    twin.advance(600)
    before = twin.job("train-01").step
    twin.advance(600)
    healthy_steps = twin.job("train-01").step - before
    twin.throttle_gpu("node-004", 6)
    c = twin.telemetry.counters("node-004", 6)
    assert c.clock_event_reasons == CLOCK_SW_THERMAL | CLOCK_HW_THERMAL and c.gpu_temp_c > 85
    before = twin.job("train-01").step
    twin.advance(600)
    assert twin.job("train-01").step - before < healthy_steps * 0.75
    assert twin.job("train-02").step_time_s == pytest.approx(1.5)


def test_a_degraded_leaf_slows_every_job_crossing_it_and_only_those(twin):
    twin.degrade_link("leaf-02", 2.0)
    twin.advance(10)
    assert twin.job("train-02").step_time_s == pytest.approx(1.5 * 1.3)
    assert twin.job("train-01").step_time_s == pytest.approx(2.0)
    twin.degrade_link("leaf-02", 1.0)
    twin.advance(10)
    assert twin.job("train-02").step_time_s == pytest.approx(1.5)


def test_unknown_leaf_switches_and_ranks_are_refused_readably(twin):
    with pytest.raises(FleetError, match="no leaf switch 'leaf-09'"):
        twin.degrade_link("leaf-09")
    with pytest.raises(FleetError, match=r"ranks 0\.\.31"):
        twin.inject_hang("train-02", 32)


def test_every_running_rank_beats_once_per_interval(twin):
    twin.advance(60)
    beats = beats_of(twin, 10)
    assert len(beats) == 64 + 32
    by_rank = {(b.job, b.rank): b for b in beats}
    first = by_rank[("train-01", 17)]
    assert (first.node, first.gpu) == ("node-003", 1)
    assert first.compute_s + first.comm_s == pytest.approx(first.step_time_s)
    assert beats_of(twin, 5) == []  # not due yet


def test_a_hung_rank_lags_one_collective_behind_and_a_dead_one_stops_beating(twin):
    twin.advance(60)
    twin.inject_hang("train-02", 9)
    hung = {b.rank: b for b in beats_of(twin, 10) if b.job == "train-02"}
    assert len(hung) == 32 and hung[9].collective_seq == hung[0].collective_seq - 1
    twin.inject_xid("node-005", 2, 79)
    dead = {b.rank for b in beats_of(twin, 10) if b.job == "train-01"}
    assert 34 not in dead and len(dead) == 63


def test_a_restarting_job_is_silent(twin):
    twin.advance(60)
    twin.inject_hang("train-02", 9)
    twin.restart_from_checkpoint("train-02", "test")
    assert [b for b in beats_of(twin, 10) if b.job == "train-02"] == []


def test_the_xid_window_counts_the_last_five_minutes(twin):
    twin.inject_xid("node-013", 5, 43, pid=1, process="python3")
    twin.inject_xid("node-013", 5, 43, pid=1, process="python3")
    c = twin.telemetry.counters("node-013", 5)
    assert c.xid_counts(twin.now()) == {43: 2} and c.last_xid == 43
    twin.advance(301)
    assert c.xid_counts(twin.now()) == {}


def test_a_reboot_starts_the_exporters_xid_fields_afresh(twin):
    """After a reboot the driver and dcgm-exporter start again: the last-Xid gauge reads 0 and the
    window is empty, so a detector does not count the Xid from before the reboot as a new one."""
    twin.inject_xid("node-013", 5, 43, pid=1, process="python3")
    c = twin.telemetry.counters("node-013", 5)
    twin.telemetry.node_rebooted("node-013")
    assert c.last_xid == 0 and c.xid_counts(twin.now()) == {}


def test_telemetry_is_deterministic_under_the_seed():
    a, b = FleetTwin(FleetSpec.small(seed=3)), FleetTwin(FleetSpec.small(seed=3))
    assert beats_of(a, 30) == beats_of(b, 30)
    assert a.inject_hang("train-01") == b.inject_hang("train-01")
    assert beats_of(a, 30) == beats_of(b, 30)


def test_a_slower_workload_stretches_every_rank_alike_with_no_hardware_sign(twin):
    twin.advance(60)
    healthy = {(b.job, b.rank): b for b in beats_of(twin, 10)}
    twin.slow_workload("train-02", 1.5)
    slow = [b for b in beats_of(twin, 10) if b.job == "train-02"]
    assert twin.job("train-02").step_time_s == pytest.approx(1.5 * (0.7 * 1.5 + 0.3))
    before = healthy[("train-02", 0)]
    assert all(b.compute_s == pytest.approx(before.compute_s * 1.5, rel=0.03) for b in slow)
    assert all(b.comm_s == pytest.approx(before.comm_s, rel=0.03) for b in slow)
    assert all(c.clock_event_reasons == 0 for c in twin.telemetry.gpus.values())
    assert twin.job("train-01").step_time_s == pytest.approx(2.0)
    assert "train-02 workload slower" in twin.history[-1].text
    twin.slow_workload("train-02", 1.0)
    twin.advance(10)
    assert twin.job("train-02").step_time_s == pytest.approx(1.5)
    with pytest.raises(FleetError, match="no job named 'train-09'"):
        twin.slow_workload("train-09")
