"""The simulated GPU fleet ("fleet twin"): the embedded default backend and fault injector.

It only knows the world (racks, switches, nodes, GPUs, jobs, kernel logs); it imports nothing from
the platform that watches and remediates it.
"""

from fleet.clock import DEFAULT_EPOCH, RealTimeDriver, VirtualClock
from fleet.errors import (
    ActionRefusedError,
    FleetError,
    UnknownGpuError,
    UnknownJobError,
    UnknownNodeError,
    UnsupportedXidError,
)
from fleet.faults import XID_EFFECTS, XidEffect, effect_of
from fleet.jobs import JobState, NodeReplacement, TrainingJob
from fleet.kernel_log import SUPPORTED_XIDS, RecoveryAction, journal_line, xid_pci
from fleet.kmsg import KmsgCallback
from fleet.results import ActionResult, HistoryRecord, IsolationRecord, RestartResult
from fleet.runner import run_clock
from fleet.spec import HGX_H100_PCI_BUSES, FleetSpec, JobSpec
from fleet.topology import Cluster, Gpu, GpuHealth, LeafSwitch, Node, NodeState, Rack, SpineSwitch
from fleet.twin import FleetTwin

__all__ = [
    "DEFAULT_EPOCH",
    "HGX_H100_PCI_BUSES",
    "SUPPORTED_XIDS",
    "XID_EFFECTS",
    "ActionRefusedError",
    "ActionResult",
    "Cluster",
    "FleetError",
    "FleetSpec",
    "FleetTwin",
    "Gpu",
    "GpuHealth",
    "HistoryRecord",
    "IsolationRecord",
    "JobSpec",
    "JobState",
    "KmsgCallback",
    "LeafSwitch",
    "Node",
    "NodeReplacement",
    "NodeState",
    "Rack",
    "RealTimeDriver",
    "RecoveryAction",
    "RestartResult",
    "SpineSwitch",
    "TrainingJob",
    "UnknownGpuError",
    "UnknownJobError",
    "UnknownNodeError",
    "UnsupportedXidError",
    "VirtualClock",
    "XidEffect",
    "effect_of",
    "journal_line",
    "run_clock",
    "xid_pci",
]
