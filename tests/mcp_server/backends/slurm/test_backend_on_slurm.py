"""The Slurm backend against a real Slurm on loopback: reads, an Xid 79 mitigated (GPU isolated by
draining, job requeued without the node and running elsewhere, node resumed after repair), a
spare swapped in, reboots that wait for jobs, and drains of others never lifted."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from mcp_server.backends.base import BackendError, NotFound
from mcp_server.backends.slurm import SlurmBackend, SlurmConfig, SlurmError
from tests.mcp_server.backends.slurm.cluster import INSTALL, SLURMCTLD, SlurmCluster
from tests.mcp_server.backends.slurm.conftest import loopback, report_gpu, submit
from tests.system_packages import require
from tests.waiting import eventually

require(SLURMCTLD, "Slurm (slurmctld, slurmd) with munge", INSTALL)

pytestmark = pytest.mark.slow
SCHEDULED_S = 20.0


async def running(backend: SlurmBackend, job: str) -> list[str]:
    """Wait until ``job`` runs; its nodes."""

    async def check() -> bool:
        return (await backend.get_job(job)).state == "running"

    await eventually(check, within_s=SCHEDULED_S, what=f"job {job} to run")
    return (await backend.get_job(job)).nodes


async def test_reads_nodes_gpus_jobs_and_checkpoint_facts(slurm: SlurmCluster, backend: SlurmBackend) -> None:
    job = submit(slurm)
    nodes = await running(backend, job)
    report_gpu(slurm, nodes[0], {"3": "fallen_off_bus"}, {"3": 79})

    listed = {n.name: n for n in await backend.list_nodes()}
    first = await backend.get_node(nodes[0])
    view = await backend.get_job("train-llm")
    owner = await backend.job_for_gpu(nodes[0], 3)
    checkpoint = await backend.checkpoint_status(job)
    context = await backend.fleet_context()

    assert sorted(listed) == ["gpu-node-001", "gpu-node-002", "gpu-node-003", "gpu-node-004"]
    assert all(n.gpus_total == 8 and n.state == "ready" for n in listed.values())
    assert [n for n, d in listed.items() if d.spare] == ["gpu-node-004"]
    assert first.jobs == [job] and first.gpus[3].health == "fallen_off_bus" and first.gpus[3].last_xid == 79
    assert (first.gpus_healthy, first.rack, first.leaf_switch) == (7, "r01", "leaf-01")
    assert (view.name, view.state, view.gpus, view.restarts, view.step) == (job, "running", 16, 0, 1200)
    assert owner is not None and owner.name == job
    assert checkpoint.has_checkpoint and checkpoint.last_checkpoint_step == 1000
    assert checkpoint.gpu_hours_at_risk == pytest.approx(200 * 1.25 * 16 / 3600, abs=1e-4)
    assert (context.cluster_nodes, context.nodes_out_of_service) == (4, 0)
    assert await backend.job_for_gpu("gpu-node-003", 0) is None


async def test_an_xid_79_is_mitigated_and_the_repaired_node_resumed(
    slurm: SlurmCluster, backend: SlurmBackend
) -> None:
    job = submit(slurm)
    bad, good = await running(backend, job)
    report_gpu(slurm, bad, {"3": "fallen_off_bus"}, {"3": 79})

    isolated = await backend.isolate_gpu(bad, 3, "Xid 79: fell off the bus", "triage-agent")
    again = await backend.isolate_gpu(bad, 3, "Xid 79: fell off the bus", "triage-agent")
    node = await backend.get_node(bad)
    # This cluster's gres.conf names device files: Slurm refuses a lower count, so the node drains.
    assert isolated.changed and isolated.data["mode"] == "drain"
    assert "Slurm would not lower the GPU GRES" in isolated.detail
    assert "Invalid generic resource (gres) specification" in isolated.detail
    assert not again.changed
    assert node.gpus[3].isolated and node.cordoned and node.cordon_owner == "gpu-aiops/triage-agent"
    assert node.labels["slurm/reason"].startswith("gpu-aiops: GPU 3 isolated: Xid 79")

    restarted = await backend.restart_from_checkpoint(job, "Xid 79 on its node", "triage-agent")
    assert restarted.changed and restarted.data["excluded"] == bad
    after = await running(backend, job)
    assert bad not in after and good in after
    assert (await backend.get_job(job)).restarts == 1
    assert "replaced" in restarted.data and restarted.data["replaced"] == bad

    status = await backend.service_status(bad)
    assert not status.can_return and "GPU 3 not healthy" in status.why_not
    with pytest.raises(BackendError, match="isolated by this drain: restore_gpus first"):
        await backend.uncordon_node(bad, "too early", "olga")

    report_gpu(slurm, bad, {})  # repaired: the node agent sees eight healthy GPUs
    assert (await backend.service_status(bad)).can_return
    restored = await backend.restore_gpus(bad, "repaired", "olga")
    resumed = await backend.uncordon_node(bad, "repaired", "olga")
    status = await backend.service_status(bad)

    assert restored.changed and "GPU 3 on" in restored.detail
    assert resumed.changed and status.in_service and not status.cordoned and status.isolated_gpus == []
    assert "gpu-node" in slurm.run("sinfo", "-h", "-n", bad, "-o", "%N %T") and "idle" in slurm.run(
        "sinfo", "-h", "-n", bad, "-o", "%T"
    )


async def test_two_isolations_at_once_on_one_node_are_both_recorded(backend: SlurmBackend) -> None:
    first, second = await asyncio.gather(
        backend.isolate_gpu("gpu-node-002", 3, "Xid 79", "triage-agent"),
        backend.isolate_gpu("gpu-node-002", 5, "Xid 48", "olga"),
    )
    node = await backend.get_node("gpu-node-002")

    assert first.changed and second.changed
    assert [g.index for g in node.gpus if g.isolated] == [3, 5]
    assert (await backend.fleet_context()).isolations_last_hour == 2


async def test_a_node_someone_else_drained_is_never_resumed(
    slurm: SlurmCluster, backend: SlurmBackend
) -> None:
    slurm.run("scontrol", "update", "nodename=gpu-node-002", "state=drain", "reason=hw-team: DIMM swap")

    cordon = await backend.cordon_node("gpu-node-002", "Xid 79", "triage-agent")
    status = await backend.service_status("gpu-node-002")
    with pytest.raises(
        BackendError, match=r"drained by root \(hw-team: DIMM swap\); only they can resume it"
    ):
        await backend.uncordon_node("gpu-node-002", "looks fine", "olga")
    with pytest.raises(BackendError, match="left to its owner"):
        await backend.reboot_node("gpu-node-002", "Xid 79", "olga")

    assert not cordon.changed and "already drained by 'root'" in cordon.detail
    assert not status.can_return and not status.cordoned_by_platform
    assert "drained by 'root' (hw-team: DIMM swap), not by this platform: left to its owner" in status.why_not
    assert slurm.run("sinfo", "-h", "-n", "gpu-node-002", "-o", "%E").strip() == "hw-team: DIMM swap"


async def test_a_swap_takes_the_spare_out_of_its_partition_and_requeues_without_the_node(
    slurm: SlurmCluster, backend: SlurmBackend
) -> None:
    job = submit(slurm)
    bad, good = await running(backend, job)
    # The only other worker is out for repairs: the job can only run again on the spare.
    slurm.run("scontrol", "update", "nodename=gpu-node-003", "state=drain", "reason=hw-team: cabling")
    pool = await backend.spare_pool(job, bad)
    assert (pool.candidate, pool.fit) == ("gpu-node-004", 1)

    swapped = await backend.swap_spare(job, bad, "Xid 79", "triage-agent")
    pinned: list[str] = []

    async def pinned_to_the_new_gang() -> bool:
        # squeue shows a requeued job's old allocation for a moment before its requested nodes.
        view = await backend.get_job(job)
        pinned[:] = sorted(view.nodes)
        return view.state in ("restarting", "running") and pinned == sorted([good, "gpu-node-004"])

    await eventually(pinned_to_the_new_gang, within_s=30, what="the job pinned to the spare")
    again = await backend.swap_spare(job, bad, "Xid 79", "triage-agent")
    after = await running(backend, job)

    assert (swapped.data["spare"], swapped.data["node"], swapped.data["spares_left"]) == (
        "gpu-node-004",
        bad,
        0,
    )
    assert pinned == sorted([good, "gpu-node-004"])
    assert not again.changed and "already swapped out" in again.detail
    assert sorted(after) == sorted([good, "gpu-node-004"])
    assert "gpu-node-004 moved from partition spares to gpu" in swapped.detail
    assert (await backend.spare_pool()).spares == []
    assert (await backend.get_node(bad)).cordon_owner == "gpu-aiops/triage-agent"


async def test_a_swap_takes_the_spare_out_of_the_spare_reservation() -> None:
    with loopback(spares=[]) as slurm:  # every node in partition gpu; two of them reserved
        slurm.run(
            "scontrol", "create", "reservation", "reservationname=spare-pool", "nodes=gpu-node-[003-004]",
            "starttime=now", "duration=infinite", "users=daemon", "flags=maint,ignore_jobs",
        )  # fmt: skip
        backend = SlurmBackend.connect(SlurmConfig(conf=slurm.conf, spare_reservation="spare-pool"))
        job = submit(slurm)
        bad, good = await running(backend, job)
        pool = await backend.spare_pool(job, bad)

        swapped = await backend.swap_spare(job, bad, "Xid 79", "triage-agent")
        after = await running(backend, job)
        left = slurm.run("scontrol", "show", "reservation", "spare-pool", "-o")

    assert [s.name for s in pool.spares] == [
        "gpu-node-003",
        "gpu-node-004",
    ] and pool.candidate == "gpu-node-003"
    assert "gpu-node-003 left reservation spare-pool" in swapped.detail
    assert sorted(after) == sorted([good, "gpu-node-003"])
    assert " Nodes=gpu-node-004 " in left


async def test_a_reboot_waits_for_the_running_job(slurm: SlurmCluster, backend: SlurmBackend) -> None:
    job = submit(slurm)
    node, _ = await running(backend, job)

    asked = await backend.reboot_node(node, "GPU off the bus", "olga")
    again = await backend.reboot_node(node, "GPU off the bus", "olga")
    status = await backend.service_status(node)

    assert asked.changed and asked.data["running_jobs"] == 1 and f"waits for job {job}" in asked.detail
    assert not again.changed
    assert status.maintenance == "reboot" and status.jobs == [job]
    assert (await backend.get_job(job)).state == "running"  # never rebooted under it


async def test_slurm_refusals_and_a_hung_controller_are_readable_errors(
    slurm: SlurmCluster, backend: SlurmBackend
) -> None:
    with pytest.raises(NotFound, match="no node named 'gpu-node-404'"):
        await backend.get_node("gpu-node-404")
    with pytest.raises(NotFound, match="no Slurm job '999'"):
        await backend.restart_from_checkpoint("999", "x", "olga")
    with pytest.raises(NotFound, match="no GPU 8 on gpu-node-001"):
        await backend.isolate_gpu("gpu-node-001", 8, "x", "olga")
    with pytest.raises(SlurmError, match=r"the Slurm client command 'sinfo' is not in .*nonexistent"):
        SlurmBackend.connect(SlurmConfig(bin_dir=slurm.root / "nonexistent"))

    impatient = SlurmBackend.connect(SlurmConfig(conf=slurm.conf, timeout_s=1))
    ctld = int((slurm.root / "run" / "slurmctld.pid").read_text())
    os.kill(ctld, signal.SIGSTOP)
    try:
        with pytest.raises(SlurmError, match=r"sinfo --json did not answer within 1 s \(is slurmctld up\?\)"):
            await impatient.list_nodes()
    finally:
        os.kill(ctld, signal.SIGCONT)
