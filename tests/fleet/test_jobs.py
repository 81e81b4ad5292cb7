"""Job progress and checkpoint cadence, with numbers computed by hand.

train-01 in the small spec: step 2 s, checkpoint every 1800 s of training, 30 s blocking write,
restart overhead 600 s, 8 nodes x 8 GPUs = 64 GPUs. One cycle is 1800 s training + 30 s write, so
checkpoints become durable at 1830 s, 3660 s, 5490 s, 7320 s ...
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fleet import FleetTwin, JobSpec, TrainingJob

EPOCH = datetime(2026, 11, 29, 6, 50, tzinfo=UTC)


def test_a_running_job_steps_once_per_step_time(twin: FleetTwin) -> None:
    twin.advance(61)
    job = twin.job("train-01")
    assert job.state == "running"
    assert job.step == 30  # 61 s / 2 s, the half-finished step is not counted
    assert twin.job("train-02").step == 40  # 61 s / 1.5 s


def test_checkpoints_follow_the_interval_and_the_write_blocks_progress(twin: FleetTwin) -> None:
    for _ in range(120):  # two simulated hours in 60 s steps
        twin.advance(60)
    job = twin.job("train-01")
    # Durable checkpoints at 1830, 3660 and 5490 s; the last one holds step 3 * 1800 / 2.
    assert job.last_checkpoint_at == EPOCH + timedelta(seconds=5490)
    assert job.last_checkpoint_step == 2700
    # 7200 s minus three 30 s writes = 7110 s of training.
    assert job.step == 3555


def test_the_first_checkpoint_lands_when_its_write_finishes(twin: FleetTwin) -> None:
    twin.advance(1815)  # mid-write
    job = twin.job("train-01")
    assert job.last_checkpoint_at is None
    assert job.step == 900
    twin.advance(15)
    assert job.last_checkpoint_at == EPOCH + timedelta(seconds=1830)
    assert job.last_checkpoint_step == 900
    assert job.checkpoint_age_s(twin.now()) == 0.0


@pytest.mark.parametrize("chunk", [0.5, 7.5, 60.0, 450.0, 7200.0])
def test_progress_does_not_depend_on_how_time_is_chopped_up(chunk: float) -> None:
    spec = JobSpec(name="j", nodes=1, step_time_s=2.0, checkpoint_interval_s=1800, checkpoint_write_s=30)
    job = TrainingJob.from_spec(spec, ["node-001"], 8, pid_base=1000)
    elapsed = 0.0
    while elapsed < 7200:
        job.advance(EPOCH + timedelta(seconds=elapsed), chunk)
        elapsed += chunk
    assert (job.step, job.last_checkpoint_step) == (3555, 2700)
    assert job.last_checkpoint_at == EPOCH + timedelta(seconds=5490)


def test_a_zero_second_checkpoint_write_is_durable_at_once() -> None:
    spec = JobSpec(name="j", nodes=2, step_time_s=1.0, checkpoint_interval_s=100, checkpoint_write_s=0)
    job = TrainingJob.from_spec(spec, ["node-001", "node-002"], 8, pid_base=1000)
    job.advance(EPOCH, 250)
    assert (job.step, job.last_checkpoint_step) == (250, 200)
    assert job.last_checkpoint_at == EPOCH + timedelta(seconds=200)


def test_each_rank_has_its_own_pid() -> None:
    spec = JobSpec(name="j", nodes=2, step_time_s=1.0, checkpoint_interval_s=100, checkpoint_write_s=0)
    job = TrainingJob.from_spec(spec, ["node-001", "node-002"], 8, pid_base=5000)
    assert job.pid_for("node-001", 0) == 5000
    assert job.pid_for("node-002", 3) == 5011
