"""Faults of a node's host rather than of its GPUs: the host going away, its InfiniBand link failing.

Neither raises an Xid or touches DCGM's GPU counters. What the platform sees is what the training
processes do: the ranks on the node die (a host that went away takes them along; on a dead link NCCL
gets an IB async error on that node first and the rank aborts) while the ranks elsewhere wait in the
next collective, still beating — the hang detector names the node whose ranks went silent. A failed
link also prints the ConnectX driver's port module event, as ``mlx5_core`` does when a cable is
pulled or a transceiver fails (``mlx5_core 0000:0c:00.0: Port module event: module 0, Cable
unplugged``); a host that went away prints nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fleet.errors import FleetError

if TYPE_CHECKING:
    from fleet.twin import FleetTwin

HCA_PCI = "0000:0c:00.0"
"""The compute-fabric ConnectX adapter of a twin node (one per node in the twin's model)."""


def _stop_ranks(twin: FleetTwin, node: str, why: str) -> list[str]:
    now, stopped = twin.clock.now(), []
    for job in twin.jobs_on_node(node):
        if job.stall(now, why):
            stopped.append(job.name)
        for gpu in job.gpu_indices:
            twin.telemetry.process_died(job, node, gpu)
    return stopped


def lose_node(twin: FleetTwin, node: str) -> list[str]:
    """The host goes away (a kernel panic, a power or board fault, unplanned host maintenance): the
    node turns NotReady, its training processes die without a word (no kernel line reaches the log,
    its dcgm-exporter is no longer scraped) and every job on it stalls. A reboot brings it back."""
    target = twin.node(node)
    if target.state != "ready":
        raise FleetError(f"{node} is already {target.state}")
    target.state = "not_ready"
    stopped = _stop_ranks(twin, node, f"{node} went away")
    twin.record_fault(f"{node} went away (NotReady)" + (f"; stopped {', '.join(stopped)}" if stopped else ""))
    return stopped


def fail_nic(twin: FleetTwin, node: str) -> list[str]:
    """The node's compute-fabric link fails (a cable, a transceiver, the adapter): the driver prints
    the port module event, the ranks on the node abort, the job stalls. The node stays Ready and its
    GPUs healthy: moving the job off the node helps, resetting a GPU or rebooting does not. Returns
    the kernel lines printed."""
    twin.node(node)
    lines = twin.log_kernel_messages(
        node, [f"mlx5_core {HCA_PCI}: Port module event: module 0, Cable unplugged"]
    )
    stopped = _stop_ranks(twin, node, f"{node} lost its InfiniBand link")
    twin.record_fault(
        f"{node} InfiniBand link down (cable unplugged)"
        + (f"; stopped {', '.join(stopped)}" if stopped else "")
    )
    return lines
