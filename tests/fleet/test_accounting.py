"""GPU-hours lost, checked against hand-computed numbers (formula in ``fleet.jobs``):
lost = GPUs x (stalled + pending + restarting time) + GPUs x (work discarded by restarts)."""

from __future__ import annotations

import pytest

from fleet import FleetSpec, FleetTwin, JobSpec


def test_a_stall_then_a_restart_costs_the_stall_the_lost_work_and_the_overhead(twin: FleetTwin) -> None:
    twin.advance(3000)  # train-01: checkpoint at 1830 s, 1170 s of work since
    twin.inject_xid("node-003", 2, 79)
    twin.advance(120)  # stalled 120 s
    job = twin.job("train-01")
    assert job.gpu_hours_lost == pytest.approx(64 * 120 / 3600)  # 2.1333

    twin.restart_from_checkpoint("train-01", "Xid 79")
    assert job.gpu_hours_lost == pytest.approx(64 * (120 + 1170) / 3600)  # 22.9333
    twin.advance(900)  # 600 s of restart overhead, then running again
    assert job.gpu_hours_lost == pytest.approx(64 * (120 + 1170 + 600) / 3600)  # 33.6
    assert twin.job("train-02").gpu_hours_lost == 0.0
    assert twin.gpu_hours_lost_total == pytest.approx(33.6)


def test_time_pending_counts_as_lost() -> None:
    spec = FleetSpec(
        spare_nodes=0,
        jobs=[
            JobSpec(name="train-01", nodes=2, step_time_s=1, checkpoint_interval_s=600, checkpoint_write_s=0)
        ],
    )
    twin = FleetTwin(spec)
    twin.advance(900)  # checkpoint at 600 s; 300 s of work since
    twin.inject_xid("node-001", 0, 79)
    twin.advance(60)  # stalled
    twin.restart_from_checkpoint("train-01", "Xid 79")  # no spare: pending
    twin.advance(240)
    # 16 GPUs x (60 s stalled + 300 s discarded + 240 s pending) = 16 x 600 s = 2.6667 GPU-hours
    assert twin.job("train-01").state == "pending"
    assert twin.job("train-01").gpu_hours_lost == pytest.approx(16 * 600 / 3600)


def test_a_healthy_fleet_loses_nothing(twin: FleetTwin) -> None:
    for _ in range(24):
        twin.advance(3600)
    assert twin.gpu_hours_lost_total == 0.0
