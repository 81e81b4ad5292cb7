"""The fleet twin: a simulated GPU cluster with training jobs, fault injection and actions.

It is the embedded default backend: the MCP tools, the demo, the tests and the evals run against
it. Everything is deterministic under ``spec.seed`` (one ``random.Random``; never the global one).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from fleet import host_faults
from fleet.clock import VirtualClock
from fleet.diagnostics import DiagLevel, DiagnosticRun, NodeDiagnostics
from fleet.errors import (
    ActionRefusedError,
    FleetError,
    UnknownGpuError,
    UnknownJobError,
    UnknownNodeError,
    UnsupportedXidError,
)
from fleet.failure_model import FailureModel, apply_draw
from fleet.faults import ATTRIBUTED_TO_PROCESS, TRAINING_PROCESS, XidEffect, effect_of, worse_health
from fleet.jobs import NodeReplacement, TrainingJob
from fleet.kernel_log import (
    SUPPORTED_XIDS,
    RecoveryAction,
    XidContext,
    catalog_xid,
    fallen_off_bus_three_lines,
    journal_line,
    xid_messages,
)
from fleet.kmsg import KmsgCallback, KmsgQueue
from fleet.maintenance import FleetMaintenance
from fleet.numerics import SdcFault, SdcMode
from fleet.results import ActionResult, HistoryKind, HistoryRecord, IsolationRecord, RestartResult
from fleet.scheduler import plan_gang
from fleet.spec import FleetSpec
from fleet.telemetry import BeatCallback, EccInjection, FleetTelemetry
from fleet.topology import LABEL_POOL, POOL_TRAINING, Cluster, Gpu, Node, build_cluster


class FleetTwin:
    """A simulated GPU fleet: topology, jobs, simulated time, faults and remediation actions.

    Every action is idempotent: repeating it changes nothing more and says so (``changed=False``).
    """

    def __init__(self, spec: FleetSpec | None = None, clock: VirtualClock | None = None) -> None:
        self.spec = spec if spec is not None else FleetSpec.small()
        self.run_id = uuid.uuid4().hex[:12]
        """This twin's identity: a fresh twin is a fresh fleet (state kept about an earlier twin of the
        same spec, such as the circuit breaker's take-outs, does not apply to it)."""
        self.clock = clock if clock is not None else VirtualClock(self.spec.epoch)
        self._rng = random.Random(self.spec.seed)
        self.cluster: Cluster = build_cluster(self.spec, self._rng)
        self._jobs = self._place_jobs()
        self._kmsg = KmsgQueue()
        self._isolations: list[IsolationRecord] = []
        self._history: list[HistoryRecord] = []
        # Counters and heartbeats draw from their own generator, so adding telemetry left every
        # kernel line and UUID of a given seed unchanged.
        self.telemetry = FleetTelemetry(
            self.cluster,
            random.Random(f"telemetry-{self.spec.seed}"),
            base_step_s={job.name: job.step_time_s for job in self.spec.jobs},
        )
        self.failures: FailureModel | None = None
        self.maintenance = FleetMaintenance(self)
        self.numerics = self.telemetry.numerics
        self.diagnostics = NodeDiagnostics()

    def _place_jobs(self) -> dict[str, TrainingJob]:
        workers = [n.name for n in self.cluster.nodes.values() if not n.spare]
        jobs: dict[str, TrainingJob] = {}
        for job_spec, first, offset in self.spec.packing():
            gang = workers[first : first + job_spec.nodes]
            pid_base = self._rng.randrange(10_000, 4_000_000)
            jobs[job_spec.name] = TrainingJob.from_spec(
                job_spec, gang, self.spec.gpus_per_node, pid_base, gpu_offset=offset
            )
        return jobs

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

    # -- time ---------------------------------------------------------------------------------------

    def advance(self, seconds: float) -> datetime:
        """Move simulated time: jobs step and checkpoint, restarts finish after their overhead, and
        idle gangs accrue GPU-hours lost (formula in ``fleet.jobs``). Returns the new time."""
        if seconds < 0:
            raise FleetError(f"cannot advance the fleet by a negative amount ({seconds} s)")
        start = self.clock.now()
        self._schedule_pending(start)
        self.telemetry.before_advance(self._jobs.values())
        events = [event for job in self._jobs.values() for event in job.advance(start, seconds)]
        for at, text in sorted(events, key=lambda event: event[0]):
            self._record(at, "job", text)
        now = self.clock.advance(seconds)
        for job in self._jobs.values():
            self.numerics.corrupt(job)  # a persistent SDC GPU corrupts again whoever computes on it
        self.maintenance.complete(now)
        if self.failures is not None:
            for draw in self.failures.draw(seconds / 3600.0):
                apply_draw(self, draw)
        self.telemetry.after_advance(now, self._jobs.values())
        return now

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

    def lose_node(self, node: str) -> list[str]:
        """The host goes away (``fleet.host_faults.lose_node``); returns the jobs it stopped."""
        return host_faults.lose_node(self, node)

    def fail_nic(self, node: str) -> list[str]:
        """The node's InfiniBand link fails (``fleet.host_faults.fail_nic``); returns the kernel lines."""
        return host_faults.fail_nic(self, node)

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

    def run_diagnostics(self, node: str, level: DiagLevel, reason: str) -> tuple[DiagnosticRun, bool]:
        """Start DCGM diagnostics at ``level`` on ``node`` (``fleet.diagnostics``); returns (run,
        started): a run still going is returned as it is. Refused while a running job computes on
        the node's GPUs (the tests need them idle)."""
        target, now = self.node(node), self.clock.now()
        busy = [j.name for j in self.jobs_on_node(node) if j.state in ("running", "restarting")]
        if busy:
            raise ActionRefusedError(
                f"diagnostics need the GPUs of {node} idle, but {', '.join(busy)} runs on them: stop the job first"
            )
        gpus = [
            (g.index, g.health != "healthy", self.numerics.faulty(node, g.index) is not None)
            for g in target.gpus
        ]
        run, started = self.diagnostics.start(node, level, now, reason, gpus)
        if started:
            self._record(
                now, "action", f"DCGM diagnostics level {level} on {node} ({reason}), {run.duration_s:.0f} s"
            )
        return run, started

    def stop_job(self, job: str, reason: str) -> ActionResult:
        """Stop a running job and keep its gang (its GPUs go idle, e.g. for diagnostics); a restart
        from a checkpoint resumes it."""
        target, now = self.job(job), self.clock.now()
        if not target.stall(now, f"stopped: {reason}"):
            detail = f"{job} is {target.state}, not running; nothing changed"
            return ActionResult(action="stop_job", target=job, changed=False, detail=detail, time=now)
        self.telemetry.stopped(target)
        detail = f"stopped {job} at step {target.step} ({reason}); its gang is kept"
        self._record(now, "action", detail)
        return ActionResult(action="stop_job", target=job, changed=True, detail=detail, time=now)

    def leaf_of(self, node: str) -> str:
        return self.node(node).leaf

    def rank_on(self, node: str, gpu: int) -> tuple[str, int] | None:
        """(job, rank) of the training rank on that GPU, or None when it is idle."""
        job = self.job_for_gpu(node, gpu)
        return None if job is None else (job.name, job.rank_of(node, gpu))

    def subscribe_heartbeats(self, callback: BeatCallback) -> Callable[[], None]:
        """Call ``callback(beat)`` for every future training-rank heartbeat; returns the unsubscriber."""
        return self.telemetry.subscribe(callback)

    def enable_failures(self, *, acceleration: float = 1.0, lemons: int = 4) -> FailureModel:
        """Let faults happen on their own at published rates (``fleet.failure_model``)."""
        gpus = [(n.name, g.index) for n in self.nodes.values() for g in n.gpus]
        self.failures = FailureModel(
            gpus, random.Random(f"failures-{self.spec.seed}"), lemons=lemons, acceleration=acceleration
        )
        return self.failures

    def drain_kmsg(self) -> list[tuple[str, str]]:
        """Every kernel line emitted since the last drain, as (node, line), oldest first."""
        return self._kmsg.drain()

    def subscribe_kmsg(self, callback: KmsgCallback) -> Callable[[], None]:
        """Call ``callback(node, line)`` for every future kernel line; returns the unsubscriber."""
        return self._kmsg.subscribe(callback)

    # -- actions ------------------------------------------------------------------------------------

    def isolate_gpu(self, node: str, gpu: int, reason: str) -> ActionResult:
        """Take a GPU out of service: no new work lands on it (a running job is not stopped)."""
        target, now = self.gpu(node, gpu), self.clock.now()
        job = self.job_for_gpu(node, gpu)
        data: dict[str, str | int | float | bool | None] = {
            "node": node,
            "gpu": gpu,
            "uuid": target.uuid,
            "pci_bus_id": target.pci_bus_id,
            "health": target.health,
            "job": job.name if job else None,
        }
        if target.isolated:
            detail = f"GPU {gpu} on {node} is already isolated ({target.isolation_reason}); nothing changed"
            return ActionResult(
                action="isolate_gpu",
                target=f"{node}/gpu{gpu}",
                changed=False,
                detail=detail,
                time=now,
                data=data,
            )
        target.isolated, target.isolation_reason = True, reason
        self.numerics.isolated(node, gpu)
        self._isolations.append(IsolationRecord(time=now, node=node, gpu=gpu, reason=reason))
        detail = f"isolated GPU {gpu} on {node} ({target.uuid}, {target.pci_bus_id}): {reason}"
        self._record(now, "action", detail)
        return ActionResult(
            action="isolate_gpu", target=f"{node}/gpu{gpu}", changed=True, detail=detail, time=now, data=data
        )

    def restart_from_checkpoint(
        self, job: str, reason: str, at_or_before_step: int | None = None
    ) -> RestartResult:
        """Restart a job from its last checkpoint (or, with ``at_or_before_step``, the newest kept
        checkpoint at or before that step: one written before a corruption began): progress since
        then is discarded, unfit gang members are swapped for warm spares, and the restart takes
        ``restart_overhead_s``; with no spare to cover an unfit member the job waits in ``pending``
        until capacity appears. No kept checkpoint at or before the step is a ``FleetError``."""
        target, now = self.job(job), self.clock.now()
        if at_or_before_step is not None:
            target.checkpoint_at_or_before(at_or_before_step)  # raises when there is none
        if target.state in ("restarting", "pending", "completed"):
            detail = f"{job} is already {target.state}; nothing changed"
            if target.state == "pending":
                detail += f" (waiting for: {target.stall_reason})"
            return RestartResult(
                action="restart_from_checkpoint",
                target=job,
                changed=False,
                detail=detail,
                time=now,
                state=target.state,
                resume_step=target.last_checkpoint_step,
                lost_steps=0,
                lost_work_s=0.0,
            )
        newer = [c.step for c in target.checkpoints]
        lost_steps, lost_work_s = target.rewind_to_checkpoint(at_or_before_step)
        discarded = [step for step in newer if step > target.step]
        self.numerics.rewound(target)
        target.restarts += 1
        self._record(
            now,
            "action",
            f"restart {job} from the checkpoint at step {target.step} ({reason}); "
            f"discarded {lost_steps} steps ({lost_work_s:.0f} s of work)"
            + (f" and the checkpoints at steps {', '.join(map(str, discarded))}" if discarded else ""),
        )
        replacements, blocked = self._place(target, now)
        if blocked:
            detail = f"{job} rewound to step {target.step}; pending: {'; '.join(blocked)}"
        else:
            swapped = ", ".join(f"{r.old} with {r.new}" for r in replacements)
            detail = f"{job} restarting from step {target.step}" + (
                f"; replaced {swapped}" if swapped else ""
            )
        return RestartResult(
            action="restart_from_checkpoint",
            target=job,
            changed=True,
            detail=detail,
            time=now,
            state=target.state,
            resume_step=target.step,
            discarded_checkpoints=discarded,
            lost_steps=lost_steps,
            lost_work_s=lost_work_s,
            replacements=replacements,
            waiting_for=blocked,
            data={"restarts": target.restarts, "gpus": target.gpus},
        )

    def _place(self, job: TrainingJob, now: datetime) -> tuple[list[NodeReplacement], list[str]]:
        plan = plan_gang(job.nodes, self.nodes, job.gpu_indices)
        if not plan.placeable:
            if job.state != "pending":
                job.wait_for_capacity(now, "; ".join(plan.blocked))
                self._record(now, "job", f"{job.name} pending: {'; '.join(plan.blocked)}")
            return [], plan.blocked
        replacements = []
        for old, new, why in plan.swaps:
            spare = self.nodes[new]
            spare.spare, spare.labels[LABEL_POOL] = False, POOL_TRAINING
            job.nodes[job.nodes.index(old)] = new
            replacement = NodeReplacement(time=now, old=old, new=new, reason=why)
            job.replacements.append(replacement)
            replacements.append(replacement)
            self._record(now, "job", f"{job.name}: replaced {old} with spare {new} ({why})")
        job.begin_restart(now)
        self._record(now, "job", f"{job.name} {job.state}, resuming from step {job.step}")
        return replacements, []

    def _schedule_pending(self, now: datetime) -> None:
        for job in sorted(self._jobs.values(), key=lambda j: (j.pending_since or now, j.name)):
            if job.state == "pending":
                self._place(job, now)

    def cordon_node(self, node: str, owner: str) -> ActionResult:
        """Mark a node unschedulable (running work keeps running); ``owner`` alone may undo it."""
        target, now = self.node(node), self.clock.now()
        if target.cordoned:
            detail = f"{node} is already cordoned by {target.cordon_owner!r}; nothing changed"
            return ActionResult(action="cordon_node", target=node, changed=False, detail=detail, time=now)
        target.cordoned, target.cordon_owner = True, owner
        detail = f"cordoned {node} (owner {owner!r})"
        self._record(now, "action", detail)
        return ActionResult(action="cordon_node", target=node, changed=True, detail=detail, time=now)

    def uncordon_node(self, node: str, owner: str) -> ActionResult:
        """Make a node schedulable again; refused when someone else set the cordon."""
        target, now = self.node(node), self.clock.now()
        if not target.cordoned:
            detail = f"{node} is not cordoned; nothing changed"
            return ActionResult(action="uncordon_node", target=node, changed=False, detail=detail, time=now)
        if target.cordon_owner != owner:
            raise ActionRefusedError(
                f"{node} was cordoned by {target.cordon_owner!r}; only they can uncordon it, not {owner!r}"
            )
        target.cordoned, target.cordon_owner = False, None
        detail = f"uncordoned {node} (owner {owner!r})"
        self._record(now, "action", detail)
        self._schedule_pending(now)
        return ActionResult(action="uncordon_node", target=node, changed=True, detail=detail, time=now)

    def record_fault(self, text: str) -> None:
        """Add a fault to the history at the current time (for faults defined outside this class)."""
        self._record(self.clock.now(), "fault", text)

    def _record(self, at: datetime, kind: HistoryKind, text: str) -> None:
        self._history.append(HistoryRecord(time=at, kind=kind, text=text))
