"""The twin's training numerics and silent data corruption: loss and gradient norms in the beats,
corruption that outlives the fault until a checkpoint from before it is restored, and DCGM
diagnostics that find a corrupting GPU only at level 3."""

from __future__ import annotations

import math

import pytest

from fleet import FleetError, FleetSpec, FleetTwin
from fleet.numerics import loss_curve
from fleet.telemetry import RankBeat


def beats_of(twin: FleetTwin, seconds: float, job: str = "train-02") -> list[RankBeat]:
    got: list[RankBeat] = []
    stop = twin.subscribe_heartbeats(got.append)
    twin.advance(seconds)
    stop()
    return [b for b in got if b.job == job]


def last_round(beats: list[RankBeat]) -> list[RankBeat]:
    latest = max(b.time for b in beats)
    return [b for b in beats if b.time == latest]


@pytest.fixture
def twin() -> FleetTwin:
    twin = FleetTwin(FleetSpec.small())
    twin.advance(2700)  # train-02 checkpointed twice (every 1,200 s of training)
    return twin


def test_a_healthy_job_reports_a_decreasing_loss_with_small_noise_the_same_on_every_rank(twin):
    beats = beats_of(twin, 600)
    assert all(b.loss is not None and math.isfinite(b.loss) for b in beats)
    assert len({b.loss for b in last_round(beats)}) == 1
    assert loss_curve("train-02", 100) > loss_curve("train-02", 2000)
    grads = [b.grad_norm for b in last_round(beats)]
    assert all(g is not None and math.isfinite(g) for g in grads)
    assert max(grads) / min(grads) < 1.2  # type: ignore[type-var,operator]


def test_the_loss_curve_is_deterministic_so_a_rewind_retraces_it():
    assert loss_curve("train-02", 1234) == loss_curve("train-02", 1234)
    assert loss_curve("train-02", 1234) != loss_curve("train-01", 1234)


def test_nan_corruption_makes_the_loss_nan_from_the_step_after_the_onset(twin):
    onset = twin.job("train-02").step
    twin.inject_sdc("node-010", 3, "nan")
    beats = beats_of(twin, 60)
    assert all(math.isnan(b.loss) for b in beats if b.step > onset)  # type: ignore[arg-type]
    assert any(b.step > onset for b in beats)


def test_a_spike_raises_the_loss_and_only_the_bad_ranks_gradient_norm(twin):
    job = twin.job("train-02")
    before = last_round(beats_of(twin, 10))[0].loss
    twin.inject_sdc("node-010", 3, "spike")
    round_ = last_round(beats_of(twin, 60))
    bad_rank = job.rank_of("node-010", 3)
    grads = {b.rank: b.grad_norm for b in round_}
    others = [g for r, g in grads.items() if r != bad_rank]
    assert grads[bad_rank] > 20 * max(others)  # type: ignore[operator,type-var]
    assert round_[0].loss > 3 * before  # type: ignore[operator]


def test_a_persistent_fault_corrupts_again_after_a_restart_until_the_gpu_is_isolated(twin):
    job = twin.job("train-02")
    good = job.step
    twin.inject_sdc("node-010", 3, "nan")
    twin.advance(60)
    twin.restart_from_checkpoint("train-02", "rollback", at_or_before_step=good)
    twin.advance(600)
    assert math.isnan(last_round(beats_of(twin, 30))[0].loss)  # type: ignore[arg-type]
    twin.stop_job("train-02", "diagnose")
    twin.isolate_gpu("node-010", 3, "sdc")
    twin.restart_from_checkpoint("train-02", "rollback", at_or_before_step=good)
    assert "node-010" not in job.nodes
    twin.advance(600)
    assert math.isfinite(last_round(beats_of(twin, 30))[0].loss)  # type: ignore[arg-type]


def test_a_transient_fault_is_cured_by_a_checkpoint_from_before_it_not_by_a_later_one(twin):
    job = twin.job("train-02")
    good = job.step
    twin.inject_sdc("node-010", 3, "nan", transient=True)
    twin.advance(1300)  # a checkpoint is written after the onset: it holds the corruption
    assert job.last_checkpoint_step > good
    twin.restart_from_checkpoint("train-02", "latest")
    twin.advance(600)
    assert math.isnan(last_round(beats_of(twin, 30))[0].loss)  # type: ignore[arg-type]
    result = twin.restart_from_checkpoint("train-02", "before the onset", at_or_before_step=good)
    assert result.resume_step <= good and result.discarded_checkpoints
    assert all(step > good for step in result.discarded_checkpoints)
    twin.advance(600)
    assert math.isfinite(last_round(beats_of(twin, 30))[0].loss)  # type: ignore[arg-type]
    assert "node-010" in job.nodes  # nothing was isolated: the GPU is fine


def test_a_job_keeps_a_short_history_of_checkpoints_and_no_checkpoint_early_enough_is_an_error(twin):
    job = twin.job("train-02")
    assert [c.step for c in job.checkpoints] == sorted(c.step for c in job.checkpoints)
    assert len(job.checkpoints) == 2
    with pytest.raises(FleetError, match="no checkpoint at or before step 10"):
        twin.restart_from_checkpoint("train-02", "too early", at_or_before_step=10)
    assert job.state == "running"  # refused before anything changed


def test_diagnostics_are_refused_while_a_running_job_holds_the_gpus(twin):
    with pytest.raises(FleetError, match="idle"):
        twin.run_diagnostics("node-010", 3, "sdc")


def test_level_3_diagnostics_fail_the_corrupting_gpu_after_their_15_minutes_and_level_1_does_not(twin):
    twin.inject_sdc("node-010", 3, "nan")
    twin.stop_job("train-02", "diagnose")
    run, started = twin.run_diagnostics("node-010", 1, "quick")
    assert started and run.duration_s < 60 and run.failing == []
    twin.advance(run.duration_s)
    run, started = twin.run_diagnostics("node-010", 3, "long")
    assert started and run.duration_s == 900
    assert twin.run_diagnostics("node-010", 3, "again")[1] is False  # still running
    latest, finished = twin.diagnostics.latest("node-010", twin.now())
    assert not finished
    twin.advance(900)
    latest, finished = twin.diagnostics.latest("node-010", twin.now())
    assert finished and latest is not None and latest.failing == [3]
    assert set(latest.gpus[3].failed_tests) == {"diagnostic", "targeted_stress"}


def test_a_gpu_in_error_fails_diagnostics_at_level_1(twin):
    twin.inject_xid("node-013", 2, 48)  # node-013 is idle
    run, _ = twin.run_diagnostics("node-013", 1, "check")
    assert run.failing == [2] and run.gpus[2].failed_tests == ["software"]


def test_a_stopped_job_sends_no_heartbeats_until_it_restarts(twin):
    twin.stop_job("train-02", "diagnose")
    assert beats_of(twin, 60) == []
    assert twin.stop_job("train-02", "again").changed is False
