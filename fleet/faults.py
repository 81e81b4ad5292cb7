"""What each Xid does to the simulated hardware and to the job on the GPU.

Effects follow the immediate actions of NVIDIA's Xid catalog (see xid-and-dcgm.md): codes that
need a GPU reset or a reboot leave the GPU in ``error`` (or off the bus, for 79) and stop the job;
application codes 13/31 and the contained error 94 kill the training process, which stalls the
gang until a restart, but leave the GPU healthy; informational codes (43, 45, 63) change nothing
but the GPU's last Xid.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleet.kernel_log import RecoveryAction
from fleet.topology import GpuHealth


@dataclass(frozen=True)
class XidEffect:
    health: GpuHealth | None
    """The GPU's health afterwards, or None when it stays as it was."""
    stalls_job: bool
    summary: str


XID_EFFECTS: dict[int, XidEffect] = {
    13: XidEffect(None, True, "graphics engine exception; the training process crashed"),
    31: XidEffect(None, True, "GPU memory page fault; the training process crashed"),
    43: XidEffect(None, False, "GPU stopped processing a channel (software fault; GPU healthy)"),
    45: XidEffect(None, False, "preemptive cleanup after an earlier fault"),
    48: XidEffect("error", True, "double-bit ECC error; the GPU needs a reset"),
    63: XidEffect(None, False, "row remapping pending (an event, not a failure)"),
    64: XidEffect("error", True, "row remapping failed; the GPU needs a reset"),
    74: XidEffect("error", True, "fatal NVLink error"),
    79: XidEffect("fallen_off_bus", True, "GPU has fallen off the bus"),
    94: XidEffect(None, True, "contained memory error; the hit process must restart"),
    95: XidEffect("error", True, "uncontained memory error; the GPU must be reset"),
    109: XidEffect("error", True, "context switch timeout"),
    119: XidEffect("error", True, "GSP RPC timeout"),
    120: XidEffect("error", True, "GSP firmware error"),
}

_SEVERITY: dict[GpuHealth, int] = {"healthy": 0, "error": 1, "fallen_off_bus": 2}


def effect_of(xid: int, recovery_action: RecoveryAction = "GPU Reset Required") -> XidEffect:
    """The effect of ``xid``; Xid 154 depends on the recovery action it announces."""
    if xid == 154:
        if recovery_action in ("None", "Drain P2P"):
            return XidEffect(None, False, f"GPU recovery action: {recovery_action}")
        return XidEffect("error", True, f"GPU recovery action: {recovery_action}")
    return XID_EFFECTS.get(xid) or _catalog_effect(xid)


# Any other code of the catalog acts as NVIDIA's immediate action says: a reset, a reboot or a
# support case leaves the GPU in error and stops its job; restarting the application stops the job
# only; ignore changes nothing.
_BUCKET_EFFECTS: dict[str, tuple[GpuHealth | None, bool]] = {
    "RESET_GPU": ("error", True),
    "RESTART_BM": ("error", True),
    "RESTART_VM": ("error", True),
    "CONTACT_SUPPORT": ("error", True),
    "WORKFLOW_NVLINK": ("error", True),
    "WORKFLOW_NVLINK5": ("error", True),
    "WORKFLOW_XID48": ("error", True),
    "RESTART_APP": (None, True),
    "CHECK_APP": (None, True),
    "CHECK_UVM": (None, True),  # the application's unified-memory use: its process dies
}
# IGNORE, CHECK_MECHANICALS (clocks reduced for power) and UPDATE_SWFW (a vGPU failed to start)
# leave the GPU and its job as they were.


def _catalog_effect(xid: int) -> XidEffect:
    from skills.catalog import load_catalog  # the catalog imports nothing of the project

    info = load_catalog().info_or_unknown(xid)
    health, stalls = _BUCKET_EFFECTS.get(str(info.nvidia_bucket), (None, False))
    return XidEffect(health, stalls, f"Xid {xid} ({info.mnemonic}): {info.meaning}")


def worse_health(current: GpuHealth, new: GpuHealth | None) -> GpuHealth:
    """Faults only make health worse: an Xid never brings a GPU back from off the bus."""
    if new is None or _SEVERITY[new] <= _SEVERITY[current]:
        return current
    return new


# Codes for which the driver names the process on the faulting channel (pid=, name=); the twin
# fills in the training rank's process when the caller gives none.
ATTRIBUTED_TO_PROCESS: frozenset[int] = frozenset({13, 31, 43, 45, 94, 109})
TRAINING_PROCESS = "pt_main_thread"
