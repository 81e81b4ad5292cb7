"""Fault injection into the fleet twin: Xids and the kernel lines that report them, ECC errors,
hangs, slow links, thermal throttling, slow workloads, silent data corruption.

A mixin of ``fleet.twin.FleetTwin``: each fault changes the simulated hardware and jobs the way
the real fault does and records itself in the history. Host faults are in ``fleet.host_faults``.
"""

from __future__ import annotations

from datetime import timedelta

from fleet.errors import FleetError, UnsupportedXidError
from fleet.faults import ATTRIBUTED_TO_PROCESS, TRAINING_PROCESS, XidEffect, effect_of, worse_health
from fleet.kernel_log import (
    SUPPORTED_XIDS,
    RecoveryAction,
    XidContext,
    catalog_xid,
    fallen_off_bus_three_lines,
    journal_line,
    xid_messages,
)
from fleet.numerics import SdcFault, SdcMode
from fleet.telemetry import EccInjection
from fleet.topology import Gpu
from fleet.twin_state import TwinState


class TwinFaults(TwinState):
    """The fault-injection API of ``fleet.twin.FleetTwin``."""

    # -- faults -------------------------------------------------------------------------------------

    def inject_xid(
        self,
        node: str,
        gpu: int,
        xid: int,
        *,
        pid: int | None = None,
        process: str | None = None,
        caused_by: int | None = None,
        recovery_action: RecoveryAction = "GPU Reset Required",
    ) -> list[str]:
        """Make the driver on ``node`` report ``xid`` for GPU ``gpu``: apply its effect to the GPU
        and the job on it, and emit (queue and return) the kernel log lines.

        Without ``pid``/``process``, codes the driver attributes to a process name the training
        rank on that GPU; Xid 45 without ``caused_by`` points at the GPU's previous Xid; Xid 154
        announces ``recovery_action``.
        """
        target = self.gpu(node, gpu)
        if xid not in SUPPORTED_XIDS and not catalog_xid(xid):
            raise UnsupportedXidError(
                f"the fleet twin cannot simulate Xid {xid} (supported: {', '.join(map(str, sorted(SUPPORTED_XIDS)))})"
            )
        job = self.job_for_gpu(node, gpu)
        if (
            pid is None
            and process is None
            and xid in ATTRIBUTED_TO_PROCESS
            and job
            and job.state == "running"
        ):
            pid, process = job.pid_for(node, gpu), TRAINING_PROCESS
        if xid == 45 and caused_by is None and target.last_xid not in (None, 45):
            caused_by = target.last_xid
        context = XidContext(
            pci_bus_id=target.pci_bus_id,
            gpu_index=gpu,
            rng=self._rng,
            pid=pid,
            process=process,
            caused_by=caused_by,
            recovery_action=recovery_action,
        )
        messages = xid_messages(xid, context)
        target.last_xid = xid
        self.telemetry.record_xid(node, gpu, xid, self.clock.now())
        self._apply(node, target, effect_of(xid, recovery_action), f"Xid {xid}")
        return self._emit(node, messages)

    def inject_three_line_fall_off(self, node: str, gpu: int) -> list[str]:
        """A GPU falls off the bus and the driver reports it in the three-line form, with no Xid."""
        target = self.gpu(node, gpu)
        messages = fallen_off_bus_three_lines(target.pci_bus_id, self.spec.gpu_pci_device_id)
        self._apply(node, target, effect_of(79), "fallen off the bus (no Xid)")
        return self._emit(node, messages)

    def _apply(self, node: str, target: Gpu, effect: XidEffect, label: str) -> None:
        now = self.clock.now()
        target.health = worse_health(target.health, effect.health)
        job = self.job_for_gpu(node, target.index)
        where = f"{node} GPU {target.index} ({target.pci_bus_id})"
        text = f"{label} on {where}: {effect.summary}"
        if job is not None and effect.stalls_job and job.stall(now, f"{label} on {node} GPU {target.index}"):
            text += f"; {job.name} stalled at step {job.step}"
        if job is not None and effect.stalls_job:
            self.telemetry.process_died(job, node, target.index)
        self._record(now, "fault", text)

    def _emit(self, node: str, messages: list[str]) -> list[str]:
        # One fault's lines land a few hundred microseconds apart, as the driver prints them.
        at, lines = self.clock.now(), []
        for i, message in enumerate(messages):
            if i:
                at += timedelta(microseconds=self._rng.randrange(20, 400))
            lines.append(journal_line(at, node, message))
        for line in lines:
            self._kmsg.push(node, line)
        return lines

    def log_kernel_messages(self, node: str, messages: list[str]) -> list[str]:
        """Print arbitrary kernel messages on ``node`` (no effect on the hardware): for log text the
        twin has no fault for — an unknown Xid, a line carrying someone's planted text."""
        self.node(node)
        return self._emit(node, messages)

    # -- faults without (only) a kernel line: ECC counters, hangs, slow links, throttling -----------

    def inject_ecc(
        self, node: str, gpu: int, kind: EccInjection = "dbe", count: int = 1, kernel_log: bool = True
    ) -> list[str]:
        """Make GPU memory fail: ``dbe`` (Xid 48, a row remap pending; the job stalls), ``sbe_burst``
        (``count`` corrected errors), ``remap_pending`` (Xid 63), ``remap_failure`` (Xid 64),
        ``retired_pages``. Updates the DCGM counters and returns the kernel lines, if any. With
        ``kernel_log=False`` the fault has its effect but only DCGM's counters show it (a driver
        line lost, or a kernel log nobody ships)."""
        target = self.gpu(node, gpu)
        self.telemetry.inject_ecc(node, gpu, kind, count)
        lines = {"dbe": [48, 63], "remap_pending": [63], "remap_failure": [64]}.get(kind, [])
        if lines and not kernel_log:
            self._record(self.clock.now(), "fault", f"ECC {kind} on {node} GPU {gpu} (DCGM counters only)")
            self._apply(node, target, effect_of(lines[0]), f"ECC {kind}")
            return []
        if not lines:
            self._record(self.clock.now(), "fault", f"ECC {kind} x{count} on {node} GPU {gpu}")
        return [line for xid in lines for line in self.inject_xid(node, gpu, xid)]

    def inject_hang(self, job: str, rank: int | None = None) -> int:
        """Hang ``job``: rank ``rank`` (default: one at random) stops inside a step, the other ranks
        wait in the next collective; the processes stay alive. Returns the hung rank."""
        target, now = self.job(job), self.clock.now()
        if rank is None:
            rank = self.telemetry.pick_rank(target.gpus)
        if not 0 <= rank < target.gpus:
            raise FleetError(f"{job} has ranks 0..{target.gpus - 1}, not {rank}")
        node, gpu = target.place_of(rank)
        if target.stall(now, f"hang: rank {rank} on {node} GPU {gpu} stopped progressing"):
            self.telemetry.hang(job, rank)
            self._record(now, "fault", f"{job} hung at step {target.step}: rank {rank} on {node} GPU {gpu}")
        return rank

    def degrade_link(self, leaf: str, factor: float = 2.0) -> None:
        """Degrade leaf switch ``leaf``: collectives of every job with a node under it take
        ``factor`` times longer (``factor`` 1 repairs it)."""
        if leaf not in self.cluster.leaves:
            raise FleetError(f"no leaf switch {leaf!r} (leaves: {', '.join(self.cluster.leaves)})")
        self.telemetry.degrade_link(leaf, factor)
        what = f"{leaf} repaired" if factor <= 1 else f"{leaf} degraded: collectives x{factor:g} slower"
        self._record(self.clock.now(), "fault", what)

    def throttle_gpu(self, node: str, gpu: int, factor: float = 1.6) -> None:
        """Thermal throttling of one GPU: its rank computes ``factor`` times slower (1 ends it)."""
        self.gpu(node, gpu)
        self.telemetry.throttle(node, gpu, factor)
        self._record(self.clock.now(), "fault", f"{node} GPU {gpu} thermal throttling x{factor:g}")

    def slow_workload(self, job: str, factor: float = 1.4) -> None:
        """The job slows down through its own doing (a data loader, a bigger batch, a code change):
        every rank computes ``factor`` times longer, with no hardware sign and no slow link; it
        stays slow after a restart or on other nodes (1 ends it)."""
        self.job(job)
        self.telemetry.slow_workload(job, factor)
        what = (
            f"{job} workload slower: every rank computes x{factor:g}"
            if factor > 1
            else f"{job} workload back to normal"
        )
        self._record(self.clock.now(), "fault", what)

    def inject_sdc(self, node: str, gpu: int, mode: SdcMode = "nan", transient: bool = False) -> None:
        """Silent data corruption on a GPU: no Xid, no ECC error, only wrong results (``fleet.numerics``).
        The job computing on it is corrupted from its next step; a persistent fault corrupts again
        whoever computes on the GPU until it is isolated, a ``transient`` one only once."""
        self.gpu(node, gpu)
        job = self.job_for_gpu(node, gpu)
        self.numerics.inject(job, SdcFault(node, gpu, mode, transient))
        what = f"silent data corruption ({mode}{', transient' if transient else ''}) on {node} GPU {gpu}"
        self._record(
            self.clock.now(),
            "fault",
            what + (f"; {job.name} corrupted from step {job.step + 1}" if job else ""),
        )
