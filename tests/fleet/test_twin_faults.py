from __future__ import annotations

import re

import pytest

from fleet import FleetError, FleetSpec, FleetTwin, UnsupportedXidError

JOURNAL = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}\+00:00 node-003 kernel: "
XID_79 = re.compile(
    r"NVRM: Xid \(PCI:[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\): 79, pid='<unknown>', name=<unknown>, "
    r"GPU has fallen off the bus\."
)


def test_xid_79_takes_the_gpu_off_the_bus_and_stalls_its_job(twin: FleetTwin) -> None:
    twin.advance(600)
    lines = twin.inject_xid("node-003", 2, 79)

    gpu = twin.gpu("node-003", 2)
    assert gpu.health == "fallen_off_bus"
    assert gpu.last_xid == 79
    assert [g.index for g in twin.node("node-003").visible_gpus] == [0, 1, 3, 4, 5, 6, 7]
    job = twin.job("train-01")
    assert job.state == "stalled"
    assert job.stalled_since == twin.now()
    assert job.step == 300
    assert twin.job("train-02").state == "running"

    assert len(lines) == 2
    assert re.fullmatch(JOURNAL + XID_79.pattern, lines[0])
    assert re.fullmatch(JOURNAL + r"NVRM: GPU 0000:3a:00\.0: GPU has fallen off the bus\.", lines[1])
    assert "(PCI:0000:3a:00)" in lines[0]


def test_a_stalled_job_makes_no_progress(twin: FleetTwin) -> None:
    twin.inject_xid("node-003", 2, 79)
    twin.advance(3600)
    job = twin.job("train-01")
    assert (job.state, job.step, job.last_checkpoint_at) == ("stalled", 0, None)


def test_emitted_lines_are_queued_for_drain_and_pushed_to_subscribers(twin: FleetTwin) -> None:
    seen: list[tuple[str, str]] = []
    unsubscribe = twin.subscribe_kmsg(lambda node, line: seen.append((node, line)))
    lines = twin.inject_xid("node-003", 2, 79)
    assert seen == [("node-003", line) for line in lines]
    assert twin.drain_kmsg() == seen
    assert twin.drain_kmsg() == []
    unsubscribe()
    twin.inject_xid("node-004", 0, 63)
    assert len(seen) == 2
    assert len(twin.drain_kmsg()) == 1


@pytest.mark.parametrize("xid", [48, 95, 119, 120])
def test_hardware_xids_put_the_gpu_in_error_and_stall_the_job(twin: FleetTwin, xid: int) -> None:
    twin.inject_xid("node-010", 4, xid)
    assert twin.gpu("node-010", 4).health == "error"
    assert twin.job("train-02").state == "stalled"
    assert len(twin.node("node-010").visible_gpus) == 8


@pytest.mark.parametrize("xid", [13, 31])
def test_application_xids_crash_the_rank_but_leave_the_gpu_healthy(twin: FleetTwin, xid: int) -> None:
    job = twin.job("train-02")
    lines = twin.inject_xid("node-010", 4, xid)
    assert twin.gpu("node-010", 4).health == "healthy"
    assert job.state == "stalled"
    assert f"pid={job.pid_for('node-010', 4)}, name=pt_main_thread, " in lines[0]


def test_xid_43_changes_nothing_but_the_last_xid(twin: FleetTwin) -> None:
    twin.inject_xid("node-010", 4, 43)
    assert twin.gpu("node-010", 4).health == "healthy"
    assert twin.gpu("node-010", 4).last_xid == 43
    assert twin.job("train-02").state == "running"


def test_xid_45_after_another_xid_names_it_as_the_cause(twin: FleetTwin) -> None:
    twin.inject_xid("node-010", 4, 13)
    (line,) = twin.inject_xid("node-010", 4, 45)
    assert line.endswith("caused by previous Xid 13")


def test_xid_154_acts_on_the_recovery_action_it_announces(twin: FleetTwin) -> None:
    (line,) = twin.inject_xid("node-010", 4, 154, recovery_action="Drain P2P")
    assert line.endswith("to 0x3 (Drain P2P)")
    assert twin.job("train-02").state == "running"
    twin.inject_xid("node-010", 4, 154, recovery_action="Node Reboot Required")
    assert twin.gpu("node-010", 4).health == "error"
    assert twin.job("train-02").state == "stalled"


def test_a_later_xid_never_brings_a_gpu_back_onto_the_bus(twin: FleetTwin) -> None:
    twin.inject_xid("node-013", 0, 79)
    twin.inject_xid("node-013", 0, 48)
    assert twin.gpu("node-013", 0).health == "fallen_off_bus"


def test_the_three_line_fall_off_acts_like_xid_79_without_an_xid(twin: FleetTwin) -> None:
    lines = twin.inject_three_line_fall_off("node-003", 1)
    assert [line.split(" kernel: ", 1)[1] for line in lines] == [
        "NVRM: The NVIDIA GPU 0000:2a:00.0",
        "NVRM: (PCI ID: 10de:2330) installed in this system has",
        "NVRM: fallen off the bus and is not responding to commands.",
    ]
    assert twin.gpu("node-003", 1).health == "fallen_off_bus"
    assert twin.gpu("node-003", 1).last_xid is None
    assert twin.job("train-01").state == "stalled"


def test_a_fault_on_an_idle_node_stalls_no_job(twin: FleetTwin) -> None:
    twin.inject_xid("node-013", 0, 79)
    assert {job.state for job in twin.jobs.values()} == {"running"}


def test_an_xid_the_twin_cannot_simulate_is_refused_with_the_supported_list(twin: FleetTwin) -> None:
    with pytest.raises(UnsupportedXidError, match=r"cannot simulate Xid 999 \(supported: 13, 31, 43"):
        twin.inject_xid("node-001", 0, 999)


def test_any_catalog_xid_acts_as_nvidia_immediate_action_says(twin: FleetTwin) -> None:
    # NVIDIA's catalog: 61 CONTACT_SUPPORT and 110 RESET_GPU leave the GPU needing work and stop
    # its job; 38 IGNORE changes nothing.
    [line] = twin.inject_xid("node-001", 0, 110)
    assert "Xid (PCI:" in line and ": 110," in line
    assert twin.gpu("node-001", 0).health == "error" and twin.job("train-01").state == "stalled"
    twin.inject_xid("node-009", 1, 38)
    assert twin.gpu("node-009", 1).health == "healthy" and twin.job("train-02").state == "running"


def test_faults_are_recorded_in_the_history(twin: FleetTwin) -> None:
    twin.inject_xid("node-003", 2, 79)
    (record,) = twin.history
    assert record.kind == "fault"
    assert record.text == (
        "Xid 79 on node-003 GPU 2 (0000:3a:00.0): GPU has fallen off the bus; train-01 stalled at step 0"
    )


def test_a_double_bit_error_can_show_only_in_dcgm(twin: FleetTwin) -> None:
    assert twin.inject_ecc("node-002", 4, "dbe", kernel_log=False) == []
    assert twin.gpu("node-002", 4).health == "error" and twin.job("train-01").state == "stalled"


@pytest.mark.parametrize("code", range(1, 163))
def test_every_code_of_nvidias_catalog_is_injectable_with_the_effect_its_bucket_says(code: int) -> None:
    from skills.catalog import NvidiaBucket, load_catalog

    twin = FleetTwin(FleetSpec.small())
    twin.advance(600)
    bucket = load_catalog().info_or_unknown(code).nvidia_bucket
    recovery = "Node Reboot Required" if code == 154 else "GPU Reset Required"
    twin.inject_xid("node-001", 0, code, recovery_action=recovery)
    health, state = twin.gpu("node-001", 0).health, twin.job("train-01").state
    needs_work = {
        NvidiaBucket.RESET_GPU,
        NvidiaBucket.RESTART_BM,
        NvidiaBucket.RESTART_VM,
        NvidiaBucket.CONTACT_SUPPORT,
    }
    if code == 79:
        assert (health, state) == ("fallen_off_bus", "stalled")
    elif bucket in needs_work or code in (48, 154) or bucket.value.startswith("WORKFLOW_NVLINK"):
        assert (health, state) == ("error", "stalled"), bucket
    elif bucket in (NvidiaBucket.RESTART_APP, NvidiaBucket.CHECK_UVM) or code == 94:
        assert (health, state) == ("healthy", "stalled"), bucket
    else:
        assert (health, state) == ("healthy", "running"), bucket


def test_a_lost_node_goes_not_ready_silently_and_stops_its_job_until_a_reboot(twin: FleetTwin) -> None:
    twin.advance(600)
    beats: list[object] = []
    twin.subscribe_heartbeats(beats.append)
    twin.drain_kmsg()

    assert twin.lose_node("node-010") == ["train-02"]
    assert twin.drain_kmsg() == []  # a host that went away prints nothing

    assert twin.node("node-010").state == "not_ready"
    assert twin.job("train-02").state == "stalled"
    assert twin.job("train-01").state == "running"
    beats.clear()
    twin.advance(60)
    nodes = {b.node for b in beats if b.job == "train-02"}  # type: ignore[attr-defined]
    assert nodes and "node-010" not in nodes  # the other ranks still beat, waiting in the collective
    with pytest.raises(FleetError, match="already not_ready"):
        twin.lose_node("node-010")


def test_losing_an_idle_node_stops_no_job(twin: FleetTwin) -> None:
    assert twin.lose_node("node-013") == []
    assert twin.node("node-013").state == "not_ready"
    assert all(job.state == "running" for job in twin.jobs.values())


def test_a_failed_link_prints_the_port_event_and_stops_the_job_but_the_node_stays_ready(
    twin: FleetTwin,
) -> None:
    twin.advance(600)
    twin.drain_kmsg()
    lines = twin.fail_nic("node-004")
    assert (
        len(lines) == 1 and "mlx5_core 0000:0c:00.0: Port module event: module 0, Cable unplugged" in lines[0]
    )
    assert twin.node("node-004").state == "ready"
    assert twin.job("train-01").state == "stalled"
    assert all(g.health == "healthy" for g in twin.node("node-004").gpus)
