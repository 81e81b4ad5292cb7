from __future__ import annotations

import pytest

from fleet import FleetError, FleetTwin, UnknownGpuError, UnknownJobError, UnknownNodeError


def test_an_unknown_node_names_the_range_that_exists(twin: FleetTwin) -> None:
    with pytest.raises(UnknownNodeError) as caught:
        twin.node("node-999")
    assert str(caught.value) == "no node named 'node-999' (cluster sim-a has node-001..node-016)"
    assert isinstance(caught.value, FleetError) and isinstance(caught.value, ValueError)


def test_an_unknown_gpu_names_the_indices_that_exist(twin: FleetTwin) -> None:
    with pytest.raises(UnknownGpuError, match=r"^no GPU 8 on node-001 \(it has GPUs 0\.\.7\)$"):
        twin.isolate_gpu("node-001", 8, "x")
    with pytest.raises(UnknownGpuError):
        twin.gpu("node-001", -1)


def test_an_unknown_job_lists_the_jobs(twin: FleetTwin) -> None:
    with pytest.raises(
        UnknownJobError, match=r"^no job named 'train-99' \(jobs on sim-a: train-01, train-02\)$"
    ):
        twin.restart_from_checkpoint("train-99", "x")


def test_actions_on_unknown_targets_fail_before_changing_anything(twin: FleetTwin) -> None:
    with pytest.raises(UnknownNodeError):
        twin.cordon_node("node-017", "agent")
    with pytest.raises(UnknownNodeError):
        twin.inject_xid("nope", 0, 79)
    assert twin.history == []
    assert twin.drain_kmsg() == []


def test_time_cannot_run_backwards(twin: FleetTwin) -> None:
    with pytest.raises(FleetError, match="negative"):
        twin.advance(-5)
