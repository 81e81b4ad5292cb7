"""Pure grouping decisions: which signals belong to one incident, and which fault may explain which.

Kept free of storage (the correlator's tables, NATS KV) so any replica applies the same rules:

- ``explains_stall``: only a hardware fault may explain a hang or a slow rank. An application Xid
  (13, 31, 43 — NVIDIA's catalog: RESTART_APP / IGNORE) or a trend (single-bit rate, a pending row
  remap) never does; a hang beside one is a hang of its own.
- ``node_wide``: the same signal on most GPUs of one node at once points at the node (NVSwitch,
  baseboard, power, driver), not at each GPU — one node-level incident.
- ``application_level``: the codes whose storms across a job's ranks are one incident about the job.
"""

from __future__ import annotations

from collections.abc import Iterable

from skills.catalog import XidLevel, load_catalog

HARDWARE_ECC = frozenset(
    {"dbe", "retired_pages_hard", "remap_failure", "remap_uncorrectable", "remap_rows_exhausted"}
)
"""DCGM findings that are faults (DCGM's own limits: an uncorrectable error, the retired-page hard
limit, a remap failure, exhausted spare rows). The rest (single-bit rate, the soft limit, a pending
remap or retirement) are trends to watch and explain nothing."""

NODE_WIDE_SHARE = 0.5
"""More than this share of a node's GPUs reporting the same signal at once is a node-level fault."""
NODE_WIDE_MIN_GPUS = 3
"""…and never fewer GPUs than this (two GPUs can fail on their own)."""


def hardware_xid(code: int) -> bool:
    """A known Xid the catalog classes as hardware (the GPU, its memory, links or firmware)."""
    info = load_catalog().info_or_unknown(code)
    return info.known and info.level is XidLevel.HARDWARE


def application_level(code: int) -> bool:
    """A known Xid that is the workload's (or informational): it never explains a hang, and a storm
    of it across one job's ranks is one incident about the job."""
    info = load_catalog().info_or_unknown(code)
    return info.known and info.level is not XidLevel.HARDWARE


def explains_stall(kind: str, xids: Iterable[int], findings: Iterable[str]) -> bool:
    """Whether an open incident of ``kind`` (with these Xids and ECC findings) on a node may explain a
    hang or a slow rank there. Only a hardware fault may: an NVSwitch SXid, a hardware Xid, or an
    ECC fault (not a trend)."""
    if kind in ("sxid", "node"):
        return True
    if kind not in ("xid", "ecc"):
        return False
    return any(hardware_xid(code) for code in xids) or bool(HARDWARE_ECC & set(findings))


def node_wide(gpus_reporting: int, gpus_on_node: int) -> bool:
    """Whether ``gpus_reporting`` GPUs of one node with the same signal at once make a node fault."""
    if gpus_on_node <= 0:
        return False
    return gpus_reporting >= NODE_WIDE_MIN_GPUS and gpus_reporting / gpus_on_node > NODE_WIDE_SHARE


CLEANUP_XIDS = frozenset({45})
"""NVIDIA: Xid 45 (PREEMPTIVE_REMOVAL) is the driver cleaning up after the application was killed or
after an earlier Xid; beside another fault it is that fault's aftermath."""
RESTARTING_RUNBOOKS = frozenset({"restart-from-checkpoint", "swap-spare"})
"""Runbooks that restart a job (a swap is followed by a restart from the checkpoint)."""


def joins_job_incident(xids: Iterable[int], earlier_xids: Iterable[int]) -> bool:
    """Whether a new Xid incident about a job folds into that job's earlier incident (of the same
    window): a cleanup Xid always does (the driver tearing down the job's processes after its fault);
    an application-level Xid does when the earlier one is application-level too — a storm of the
    job's own errors across its ranks (8 Xid 31s, twenty Xid 43) is one incident about the job."""
    codes = set(xids)
    if not codes:
        return False
    if codes <= CLEANUP_XIDS:
        return True
    earlier = set(earlier_xids) - CLEANUP_XIDS
    return bool(earlier) and all(map(application_level, codes)) and all(map(application_level, earlier))
