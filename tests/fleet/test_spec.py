from __future__ import annotations

import pytest
from pydantic import ValidationError

from fleet import FleetSpec, JobSpec


def test_the_small_spec_has_two_jobs_and_two_spares_on_sixteen_nodes() -> None:
    spec = FleetSpec.small()
    assert spec.cluster == "sim-a"
    assert spec.node_count == 16
    assert spec.spare_nodes == 2
    assert [job.name for job in spec.jobs] == ["train-01", "train-02"]
    assert all(300 <= job.restart_overhead_s <= 900 for job in spec.jobs)


def test_a_spec_whose_jobs_do_not_fit_is_rejected_with_the_numbers() -> None:
    job = JobSpec(name="big", nodes=15, step_time_s=1, checkpoint_interval_s=60, checkpoint_write_s=1)
    with pytest.raises(ValidationError, match="jobs need 15 nodes but only 14 non-spare nodes exist"):
        FleetSpec(jobs=[job])


def test_job_names_must_be_unique() -> None:
    job = JobSpec(name="train-01", nodes=1, step_time_s=1, checkpoint_interval_s=60, checkpoint_write_s=1)
    with pytest.raises(ValidationError, match="repeated: train-01"):
        FleetSpec(jobs=[job, job])


def test_a_node_cannot_hold_more_gpus_than_an_hgx_baseboard() -> None:
    with pytest.raises(ValidationError):
        FleetSpec(gpus_per_node=9)
