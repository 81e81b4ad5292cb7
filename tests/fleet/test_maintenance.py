"""Maintenance on the twin: swap a spare into a gang, drain, reset, reboot, and back to service.

The small fleet: train-01 on node-001..008 (leaf-01), train-02 on node-009..012 (leaf-02),
node-013..014 idle, node-015..016 warm spares (both on leaf-02)."""

from __future__ import annotations

import pytest

from fleet import ActionRefusedError, FleetSpec, FleetTwin
from fleet.maintenance import REBOOT_S, RESET_S

OWNER = "gpu-aiops/triage-agent"


def test_a_swap_prefers_a_spare_on_the_failed_nodes_leaf_switch(twin: FleetTwin) -> None:
    choice = twin.maintenance.choose_spare("train-02", "node-010")

    assert choice is not None
    assert choice.node.name == "node-015"
    assert choice.why == "same leaf switch as node-010 (leaf-02)"


def test_a_swap_falls_back_to_another_leaf_and_says_what_that_costs(twin: FleetTwin) -> None:
    choice = twin.maintenance.choose_spare("train-01", "node-003")

    assert choice is not None
    assert choice.node.name == "node-015"
    assert "adds spine hops" in choice.why


def test_a_swap_prefers_a_leaf_the_gang_already_uses() -> None:
    spec = FleetSpec.small().model_copy(update={"leaf_switches": 3, "spare_nodes": 3})
    twin = FleetTwin(spec)  # spares node-022..024 on leaf-03; train-01 on leaf-01 only
    twin.jobs["train-01"].nodes[-1] = "node-023"
    twin.nodes["node-023"].spare = False

    choice = twin.maintenance.choose_spare("train-01", "node-003")

    assert choice is not None and choice.node.name == "node-022"
    assert choice.why == "leaf-03 already carries part of the gang"


def test_swapping_replaces_the_member_stops_the_running_gang_and_is_idempotent(twin: FleetTwin) -> None:
    twin.advance(600)
    job = twin.job("train-02")

    first = twin.maintenance.swap_spare("train-02", "node-010", "Xid 79 on node-010")
    again = twin.maintenance.swap_spare("train-02", "node-010", "Xid 79 on node-010")

    assert first.changed and not again.changed
    assert first.data["spare"] == again.data["spare"] == "node-015"
    assert job.nodes == ["node-009", "node-015", "node-011", "node-012"]
    assert job.state == "stalled"
    assert [n.name for n in twin.spare_nodes()] == ["node-016"]
    assert twin.maintenance.swapped_out_of("node-010") == "train-02"
    restart = twin.restart_from_checkpoint("train-02", "after the swap")
    assert restart.replacements == []  # the gang is already whole


def test_a_swap_without_a_fit_spare_is_refused_naming_the_pool(twin: FleetTwin) -> None:
    twin.cordon_node("node-015", "hw-team")
    twin.inject_xid("node-016", 0, 79)

    with pytest.raises(ActionRefusedError, match="no fit spare node for train-01") as refused:
        twin.maintenance.swap_spare("train-01", "node-003", "Xid 79")

    assert "node-015 is cordoned by 'hw-team'" in str(refused.value)
    assert "node-016 has 7/8 usable GPUs" in str(refused.value)


def test_a_swap_of_a_node_outside_the_gang_is_refused(twin: FleetTwin) -> None:
    with pytest.raises(ActionRefusedError, match="node-013 is not in train-01's gang"):
        twin.maintenance.swap_spare("train-01", "node-013", "why not")


def test_draining_cordons_evicts_the_running_gang_and_is_idempotent(twin: FleetTwin) -> None:
    first = twin.maintenance.drain_node("node-004", OWNER, "GPU reset")
    again = twin.maintenance.drain_node("node-004", OWNER, "GPU reset")

    assert first.changed and not again.changed
    assert first.data["evicted"] == "train-01"
    node = twin.node("node-004")
    assert (node.cordoned, node.cordon_owner) == (True, OWNER)
    assert twin.job("train-01").state == "stalled"


def test_draining_keeps_a_cordon_someone_else_set(twin: FleetTwin) -> None:
    twin.cordon_node("node-013", "hw-team")

    result = twin.maintenance.drain_node("node-013", OWNER, "reboot")

    assert not result.changed
    assert twin.node("node-013").cordon_owner == "hw-team"


def test_a_reset_is_refused_while_work_runs_on_the_node(twin: FleetTwin) -> None:
    with pytest.raises(
        ActionRefusedError, match=r"work runs on it \(train-01 \(running\)\); drain the node first"
    ):
        twin.maintenance.reset_gpu("node-004", 2, "DBE")


def test_a_reset_clears_an_ecc_error_after_it_has_run(twin: FleetTwin) -> None:
    twin.inject_xid("node-013", 2, 48)

    started = twin.maintenance.reset_gpu("node-013", 2, "Xid 48")
    repeated = twin.maintenance.reset_gpu("node-013", 2, "Xid 48")
    twin.advance(RESET_S - 1)
    during = twin.gpu("node-013", 2).health
    twin.advance(1)

    assert started.changed and not repeated.changed
    assert twin.maintenance.activity("node-013") is None
    assert (during, twin.gpu("node-013", 2).health) == ("error", "healthy")
    assert "reset of GPU 2 on node-013 done: healthy" in twin.history[-1].text


def test_a_reset_cannot_reach_a_gpu_off_the_bus(twin: FleetTwin) -> None:
    twin.inject_xid("node-013", 1, 79)

    with pytest.raises(ActionRefusedError, match=r"fallen off the bus.*reboot the node"):
        twin.maintenance.reset_gpu("node-013", 1, "Xid 79")


def test_a_reset_leaves_a_gsp_error_for_a_reboot(twin: FleetTwin) -> None:
    twin.inject_xid("node-013", 4, 119)
    twin.maintenance.reset_gpu("node-013", 4, "Xid 119")
    twin.advance(RESET_S)

    assert twin.gpu("node-013", 4).health == "error"
    assert "a reset does not clear Xid 119" in twin.history[-1].text


def test_a_reboot_takes_its_time_and_brings_the_gpus_back(twin: FleetTwin) -> None:
    twin.inject_xid("node-014", 1, 79)
    twin.inject_xid("node-014", 4, 119)

    started = twin.maintenance.reboot_node("node-014", "Xid 79")
    repeated = twin.maintenance.reboot_node("node-014", "Xid 79")
    assert started.changed and not repeated.changed
    assert twin.node("node-014").state == "rebooting"
    assert "rebooting until" in (twin.maintenance.activity("node-014") or "")
    twin.advance(REBOOT_S - 1)
    assert twin.node("node-014").state == "rebooting"
    twin.advance(1)

    node = twin.node("node-014")
    assert node.state == "ready"
    assert [g.health for g in node.gpus] == ["healthy"] * 8


def test_a_defective_gpu_survives_reset_and_reboot(twin: FleetTwin) -> None:
    twin.inject_xid("node-013", 3, 48)
    twin.maintenance.mark_defective("node-013", 3)
    twin.maintenance.reset_gpu("node-013", 3, "Xid 48")
    twin.advance(RESET_S)
    assert twin.gpu("node-013", 3).health == "error"
    twin.maintenance.reboot_node("node-013", "still broken")
    twin.advance(REBOOT_S)

    assert twin.gpu("node-013", 3).health == "error"
    assert "GPU 3 still broken (defective)" in twin.history[-1].text


def test_a_reboot_is_refused_while_work_runs_on_the_node(twin: FleetTwin) -> None:
    with pytest.raises(ActionRefusedError, match="cannot reboot node-002"):
        twin.maintenance.reboot_node("node-002", "maintenance")


def test_a_repaired_node_that_was_swapped_out_returns_to_the_spare_pool(twin: FleetTwin) -> None:
    twin.isolate_gpu("node-010", 3, "Xid 79")
    twin.inject_xid("node-010", 3, 79)
    twin.maintenance.swap_spare("train-02", "node-010", "Xid 79")
    twin.maintenance.drain_node("node-010", OWNER, "reboot")
    twin.maintenance.reboot_node("node-010", "Xid 79")
    twin.advance(REBOOT_S)

    restored = twin.maintenance.restore_gpus("node-010", "repaired")
    back = twin.maintenance.uncordon_node("node-010", OWNER)

    assert restored.changed and restored.data["restored"] == "3"
    assert back.changed and back.data["spare_pool"] is True
    node = twin.node("node-010")
    assert (node.cordoned, node.spare, node.labels["aiops/pool"]) == (False, True, "spare")
    assert [n.name for n in twin.maintenance.fit_spares()] == ["node-010", "node-016"]


def test_only_healthy_gpus_are_restored(twin: FleetTwin) -> None:
    twin.inject_xid("node-013", 1, 79)
    twin.isolate_gpu("node-013", 1, "Xid 79")
    twin.isolate_gpu("node-013", 2, "suspect")

    result = twin.maintenance.restore_gpus("node-013", "check")

    assert (result.data["restored"], result.data["still_isolated"]) == ("2", "1")
    assert [g.isolated for g in twin.node("node-013").gpus[1:3]] == [True, False]


def test_uncordoning_another_owners_cordon_is_refused(twin: FleetTwin) -> None:
    twin.cordon_node("node-013", "hw-team")

    with pytest.raises(ActionRefusedError, match="cordoned by 'hw-team'"):
        twin.maintenance.uncordon_node("node-013", OWNER)
