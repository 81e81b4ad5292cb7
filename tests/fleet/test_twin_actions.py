"""Actions on the twin. Numbers for train-01 (small spec): step 2 s, checkpoint every 1800 s plus a
30 s write (durable at 1830 s), restart overhead 600 s, 64 GPUs."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fleet import ActionRefusedError, FleetSpec, FleetTwin, JobSpec


def test_isolating_a_gpu_twice_changes_it_once(twin: FleetTwin) -> None:
    start = twin.now()
    first = twin.isolate_gpu("node-003", 2, "Xid 79")
    twin.advance(60)
    second = twin.isolate_gpu("node-003", 2, "Xid 79 again")

    assert first.changed and not second.changed
    assert "already isolated (Xid 79)" in second.detail
    gpu = twin.gpu("node-003", 2)
    assert (gpu.isolated, gpu.isolation_reason) == (True, "Xid 79")
    assert first.data["uuid"] == gpu.uuid and first.data["job"] == "train-01"
    records = twin.isolations_since(start)
    assert [(r.time, r.node, r.gpu, r.reason) for r in records] == [(start, "node-003", 2, "Xid 79")]
    assert twin.isolations_since(start + timedelta(seconds=1)) == []
    assert [r.kind for r in twin.history] == ["action"]


def test_isolating_a_gpu_does_not_stop_the_job_running_on_it(twin: FleetTwin) -> None:
    twin.isolate_gpu("node-003", 2, "suspect")
    twin.advance(60)
    assert twin.job("train-01").state == "running"
    assert twin.job("train-01").step == 30


def test_a_restart_loses_exactly_the_progress_since_the_checkpoint_and_costs_the_overhead(
    twin: FleetTwin,
) -> None:
    twin.advance(3000)  # checkpoint of step 900 durable at 1830 s; 1170 s of training since
    job = twin.job("train-01")
    assert (job.step, job.last_checkpoint_step) == (1485, 900)
    twin.inject_xid("node-004", 6, 13)

    result = twin.restart_from_checkpoint("train-01", "Xid 13")

    assert result.changed
    assert (result.state, result.resume_step, result.lost_steps, result.lost_work_s) == (
        "restarting",
        900,
        585,
        1170.0,
    )
    assert result.replacements == []  # an application fault leaves every node fit
    assert (job.step, job.restarts) == (900, 1)
    twin.advance(599)
    assert (job.state, job.step) == ("restarting", 900)
    twin.advance(1)
    assert job.state == "running"
    twin.advance(60)
    assert job.step == 930
    assert "train-01 resumed at step 900" in [r.text for r in twin.history]


def test_restarting_again_while_a_restart_is_under_way_changes_nothing(twin: FleetTwin) -> None:
    twin.advance(100)
    twin.inject_xid("node-004", 6, 13)
    twin.restart_from_checkpoint("train-01", "Xid 13")
    again = twin.restart_from_checkpoint("train-01", "Xid 13")
    assert not again.changed
    assert again.detail == "train-01 is already restarting; nothing changed"
    assert twin.job("train-01").restarts == 1


def test_a_fault_during_a_checkpoint_write_loses_the_unfinished_checkpoint(twin: FleetTwin) -> None:
    twin.advance(1815)  # 15 s into the first write
    twin.inject_xid("node-001", 0, 31)
    result = twin.restart_from_checkpoint("train-01", "Xid 31")
    assert (result.resume_step, result.lost_steps, result.lost_work_s) == (0, 900, 1815.0)


def test_the_gang_is_replaced_onto_a_spare_which_leaves_the_pool(twin: FleetTwin) -> None:
    twin.inject_xid("node-003", 2, 79)
    result = twin.restart_from_checkpoint("train-01", "Xid 79")

    (replacement,) = result.replacements
    assert (replacement.old, replacement.new) == ("node-003", "node-015")
    assert "GPU 2 fallen_off_bus" in replacement.reason
    job = twin.job("train-01")
    assert job.nodes[2] == "node-015" and "node-003" not in job.nodes
    assert job.replacements == [replacement]
    assert [n.name for n in twin.spare_nodes()] == ["node-016"]
    assert twin.node("node-015").labels["aiops/pool"] == "training"
    assert twin.jobs_on_node("node-003") == []
    assert twin.job_for_gpu("node-015", 0) is job
    assert result.state == "restarting"


def test_an_isolated_gpu_or_a_cordon_also_forces_a_replacement(twin: FleetTwin) -> None:
    twin.isolate_gpu("node-002", 5, "ECC trend")
    twin.cordon_node("node-006", "alice")
    result = twin.restart_from_checkpoint("train-01", "swap suspects")
    assert [(r.old, r.new) for r in result.replacements] == [
        ("node-002", "node-015"),
        ("node-006", "node-016"),
    ]
    assert "GPU 5 healthy, isolated" in result.replacements[0].reason
    assert "cordoned by 'alice'" in result.replacements[1].reason


def test_without_enough_spares_the_job_waits_pending_and_takes_no_spare(twin: FleetTwin) -> None:
    for node in ("node-001", "node-002", "node-003"):
        twin.inject_xid(node, 0, 79)
    result = twin.restart_from_checkpoint("train-01", "three GPUs lost")

    assert result.changed and result.state == "pending"
    assert result.replacements == []
    assert len(result.waiting_for) == 1 and "no spare node left" in result.waiting_for[0]
    assert [n.name for n in twin.spare_nodes()] == ["node-015", "node-016"]
    again = twin.restart_from_checkpoint("train-01", "three GPUs lost")
    assert not again.changed and "waiting for" in again.detail


def test_a_pending_job_restarts_when_its_node_is_uncordoned() -> None:
    spec = FleetSpec(
        spare_nodes=0,
        jobs=[
            JobSpec(name="train-01", nodes=4, step_time_s=1, checkpoint_interval_s=600, checkpoint_write_s=0)
        ],
    )
    twin = FleetTwin(spec)
    twin.cordon_node("node-002", "alice")
    result = twin.restart_from_checkpoint("train-01", "drain node-002")
    assert result.state == "pending"
    assert "node-002 is cordoned by 'alice'" in result.waiting_for[0]

    with pytest.raises(ActionRefusedError, match="cordoned by 'alice'; only they can uncordon it, not 'bob'"):
        twin.uncordon_node("node-002", "bob")
    assert twin.job("train-01").state == "pending"

    assert twin.uncordon_node("node-002", "alice").changed
    job = twin.job("train-01")
    assert job.state == "restarting"
    assert job.nodes == ["node-001", "node-002", "node-003", "node-004"]


def test_cordon_and_uncordon_are_idempotent(twin: FleetTwin) -> None:
    assert twin.cordon_node("node-013", "agent").changed
    again = twin.cordon_node("node-013", "someone-else")
    assert not again.changed and "already cordoned by 'agent'" in again.detail
    assert twin.node("node-013").cordon_owner == "agent"
    assert twin.uncordon_node("node-013", "agent").changed
    assert not twin.uncordon_node("node-013", "agent").changed
    assert (twin.node("node-013").cordoned, twin.node("node-013").cordon_owner) == (False, None)
