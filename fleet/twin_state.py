"""What the fleet twin holds and how it is read: nodes, GPUs, jobs, history, the kernel log.

``fleet.twin.FleetTwin`` builds the state and changes it (faults in ``fleet.twin_faults``, time and
actions in ``fleet.twin``); this base class only names it and answers questions about it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime

from fleet.clock import VirtualClock
from fleet.errors import UnknownGpuError, UnknownJobError, UnknownNodeError
from fleet.jobs import TrainingJob
from fleet.kmsg import KmsgCallback, KmsgQueue
from fleet.numerics import JobNumerics
from fleet.results import HistoryKind, HistoryRecord, IsolationRecord
from fleet.spec import FleetSpec
from fleet.telemetry import BeatCallback, FleetTelemetry
from fleet.topology import Cluster, Gpu, Node


class TwinState:
    """The fleet twin's state and its queries (the attributes are set by ``FleetTwin.__init__``)."""

    spec: FleetSpec
    run_id: str
    clock: VirtualClock
    cluster: Cluster
    telemetry: FleetTelemetry
    numerics: JobNumerics
    _rng: random.Random
    _jobs: dict[str, TrainingJob]
    _kmsg: KmsgQueue
    _isolations: list[IsolationRecord]
    _history: list[HistoryRecord]

    # -- queries ------------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.cluster.name

    @property
    def nodes(self) -> dict[str, Node]:
        return self.cluster.nodes

    @property
    def jobs(self) -> dict[str, TrainingJob]:
        return self._jobs

    @property
    def history(self) -> list[HistoryRecord]:
        """What happened, oldest first: faults, actions, job transitions."""
        return list(self._history)

    @property
    def cluster_gpu_count(self) -> int:
        return sum(len(node.gpus) for node in self.nodes.values())

    @property
    def gpu_hours_lost_total(self) -> float:
        return sum(job.gpu_hours_lost for job in self._jobs.values())

    def now(self) -> datetime:
        return self.clock.now()

    def node(self, name: str) -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            names = list(self.nodes)
            raise UnknownNodeError(
                f"no node named {name!r} (cluster {self.name} has {names[0]}..{names[-1]})"
            ) from None

    def gpu(self, node: str, index: int) -> Gpu:
        gpus = self.node(node).gpus
        if not 0 <= index < len(gpus):
            raise UnknownGpuError(f"no GPU {index} on {node} (it has GPUs 0..{len(gpus) - 1})")
        return gpus[index]

    def gpu_index(self, node: str, pci: str) -> int | None:
        """The index of the GPU at PCI id ``pci`` on ``node`` (any case, with or without ``.0``)."""
        try:
            domain, bus, devfn = pci.strip().lower().removeprefix("pci:").split(":")
            device, _, function = devfn.partition(".")
            wanted = f"{int(domain, 16):04x}:{int(bus, 16):02x}:{int(device, 16):02x}.{int(function or '0')}"
        except ValueError:
            return None
        return next((g.index for g in self.node(node).gpus if g.pci_bus_id == wanted), None)

    def job(self, name: str) -> TrainingJob:
        try:
            return self._jobs[name]
        except KeyError:
            known = ", ".join(self._jobs) or "none"
            raise UnknownJobError(f"no job named {name!r} (jobs on {self.name}: {known})") from None

    def jobs_on_node(self, node: str) -> list[TrainingJob]:
        """Unfinished jobs whose gang includes ``node``."""
        self.node(node)
        return [job for job in self._jobs.values() if job.active and node in job.nodes]

    def job_for_gpu(self, node: str, index: int) -> TrainingJob | None:
        """The job whose rank runs on that GPU (a node may host several jobs), or None when it is idle."""
        self.gpu(node, index)
        return next((job for job in self.jobs_on_node(node) if job.uses(node, index)), None)

    def spare_nodes(self) -> list[Node]:
        """The warm spare pool, in name order."""
        return [node for node in self.nodes.values() if node.spare]

    def isolations_since(self, since: datetime) -> list[IsolationRecord]:
        """GPU isolations at or after ``since`` (the blast radius the policy gate weighs)."""
        return [record for record in self._isolations if record.time >= since]

    def leaf_of(self, node: str) -> str:
        return self.node(node).leaf

    def rank_on(self, node: str, gpu: int) -> tuple[str, int] | None:
        """(job, rank) of the training rank on that GPU, or None when it is idle."""
        job = self.job_for_gpu(node, gpu)
        return None if job is None else (job.name, job.rank_of(node, gpu))

    def subscribe_heartbeats(self, callback: BeatCallback) -> Callable[[], None]:
        """Call ``callback(beat)`` for every future training-rank heartbeat; returns the unsubscriber."""
        return self.telemetry.subscribe(callback)

    def drain_kmsg(self) -> list[tuple[str, str]]:
        """Every kernel line emitted since the last drain, as (node, line), oldest first."""
        return self._kmsg.drain()

    def subscribe_kmsg(self, callback: KmsgCallback) -> Callable[[], None]:
        """Call ``callback(node, line)`` for every future kernel line; returns the unsubscriber."""
        return self._kmsg.subscribe(callback)

    def record_fault(self, text: str) -> None:
        """Add a fault to the history at the current time (for faults defined outside this class)."""
        self._record(self.clock.now(), "fault", text)

    def _record(self, at: datetime, kind: HistoryKind, text: str) -> None:
        self._history.append(HistoryRecord(time=at, kind=kind, text=text))
