"""Several jobs on one node: each job runs its ranks on its own GPUs of the node, and a fault on
one GPU reaches only the job using that GPU."""

from __future__ import annotations

import pytest

from fleet import FleetSpec, FleetTwin
from fleet.spec import JobSpec


def shared_spec() -> FleetSpec:
    """train-a on GPUs 0-3 and train-b on GPUs 4-7 of node-001..002; train-c whole node-003..004."""
    job = {"step_time_s": 2.0, "checkpoint_interval_s": 1200.0, "checkpoint_write_s": 10.0}
    return FleetSpec(
        jobs=[
            JobSpec(name="train-a", nodes=2, gpus_per_node=4, **job),
            JobSpec(name="train-b", nodes=2, gpus_per_node=4, **job),
            JobSpec(name="train-c", nodes=2, **job),
        ]
    )


@pytest.fixture
def twin() -> FleetTwin:
    fleet = FleetTwin(shared_spec())
    fleet.advance(1500)
    return fleet


def test_two_jobs_share_nodes_each_on_its_own_gpus(twin: FleetTwin) -> None:
    a, b, c = twin.job("train-a"), twin.job("train-b"), twin.job("train-c")
    assert a.nodes == b.nodes == ["node-001", "node-002"] and c.nodes == ["node-003", "node-004"]
    assert (list(a.gpu_indices), list(b.gpu_indices)) == ([0, 1, 2, 3], [4, 5, 6, 7])
    assert twin.job_for_gpu("node-001", 2) is a and twin.job_for_gpu("node-001", 6) is b
    assert {j.name for j in twin.jobs_on_node("node-002")} == {"train-a", "train-b"}
    assert twin.rank_on("node-002", 5) == ("train-b", 5)  # node 1 of the gang, its second GPU


def test_a_fault_on_one_gpu_stalls_only_the_job_using_it(twin: FleetTwin) -> None:
    twin.inject_xid("node-001", 5, 79)
    assert twin.job("train-b").state == "stalled" and twin.job("train-a").state == "running"


def test_a_restart_replaces_the_shared_node_for_the_faulty_job_only(twin: FleetTwin) -> None:
    twin.inject_xid("node-001", 1, 95)
    twin.isolate_gpu("node-001", 1, "test")
    twin.restart_from_checkpoint("train-a", "test")
    a, b = twin.job("train-a"), twin.job("train-b")
    assert "node-001" not in a.nodes and a.state == "restarting"
    assert b.nodes == ["node-001", "node-002"] and b.state == "running"


def test_the_other_job_on_a_node_is_not_placed_off_it_by_a_foreign_isolation(twin: FleetTwin) -> None:
    twin.isolate_gpu("node-002", 0, "train-a's GPU")
    twin.restart_from_checkpoint("train-b", "test")
    assert twin.job("train-b").nodes == ["node-001", "node-002"]


def test_a_hung_rank_is_reported_on_the_job_s_own_gpu(twin: FleetTwin) -> None:
    rank = twin.inject_hang("train-b", rank=1)
    assert rank == 1
    assert any("rank 1 on node-001 GPU 5" in h.text for h in twin.history)


def test_jobs_that_do_not_fit_one_node_together_take_their_own_nodes() -> None:
    job = {"step_time_s": 2.0, "checkpoint_interval_s": 1200.0, "checkpoint_write_s": 10.0}
    spec = FleetSpec(
        jobs=[
            JobSpec(name="train-a", nodes=1, gpus_per_node=6, **job),
            JobSpec(name="train-b", nodes=1, gpus_per_node=4, **job),
        ]
    )
    twin = FleetTwin(spec)
    assert (twin.job("train-a").nodes, twin.job("train-b").nodes) == (["node-001"], ["node-002"])


def test_a_job_wider_than_a_node_is_refused() -> None:
    with pytest.raises(ValueError, match="more GPUs per node"):
        FleetSpec(
            jobs=[
                JobSpec(
                    name="x",
                    nodes=1,
                    gpus_per_node=9,
                    step_time_s=1,
                    checkpoint_interval_s=60,
                    checkpoint_write_s=1,
                )
            ]
        )
