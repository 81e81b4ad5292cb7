"""The fleet twin: a simulated GPU cluster with training jobs, fault injection and actions.

It is the embedded default backend: the MCP tools, the demo, the tests and the evals run against
it. Everything is deterministic under ``spec.seed`` (one ``random.Random``; never the global one).
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime

from fleet import host_faults
from fleet.clock import VirtualClock
from fleet.diagnostics import DiagLevel, DiagnosticRun, NodeDiagnostics
from fleet.errors import ActionRefusedError, FleetError
from fleet.failure_model import FailureModel, apply_draw
from fleet.jobs import NodeReplacement, TrainingJob
from fleet.kmsg import KmsgQueue
from fleet.maintenance import FleetMaintenance
from fleet.results import ActionResult, HistoryRecord, IsolationRecord, RestartResult
from fleet.scheduler import plan_gang
from fleet.spec import FleetSpec
from fleet.telemetry import FleetTelemetry
from fleet.topology import LABEL_POOL, POOL_TRAINING, Cluster, build_cluster
from fleet.twin_faults import TwinFaults


class FleetTwin(TwinFaults):
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

    def lose_node(self, node: str) -> list[str]:
        """The host goes away (``fleet.host_faults.lose_node``); returns the jobs it stopped."""
        return host_faults.lose_node(self, node)

    def fail_nic(self, node: str) -> list[str]:
        """The node's InfiniBand link fails (``fleet.host_faults.fail_nic``); returns the kernel lines."""
        return host_faults.fail_nic(self, node)

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

    def enable_failures(self, *, acceleration: float = 1.0, lemons: int = 4) -> FailureModel:
        """Let faults happen on their own at published rates (``fleet.failure_model``)."""
        gpus = [(n.name, g.index) for n in self.nodes.values() for g in n.gpus]
        self.failures = FailureModel(
            gpus, random.Random(f"failures-{self.spec.seed}"), lemons=lemons, acceleration=acceleration
        )
        return self.failures

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
