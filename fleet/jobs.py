"""Training jobs: a gang of whole nodes that steps, checkpoints on a cadence and restarts.

Progress model, while ``running``: the job trains for ``checkpoint_interval_s``, then blocks for
``checkpoint_write_s`` writing a checkpoint of the step it had reached when the write began (steps
do not advance during the write); the checkpoint becomes durable when the write ends. Then the cycle
repeats. A fault stops progress (``stalled``); a restart rewinds to the last durable checkpoint,
spends ``restart_overhead_s`` in ``restarting`` and resumes training with a fresh interval.

GPU-hours lost (``gpu_hours_lost``), with ``G`` = the gang's GPUs::

    lost = G * (time stalled + time pending + time restarting) / 3600
         + G * (work discarded by each restart) / 3600

where the work a restart discards is the running time (training and any unfinished checkpoint
write) since the last durable checkpoint. A completed restart therefore costs
``G * (discarded work + restart_overhead_s)``, on top of ``G * stalled time`` before it.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

from fleet.errors import FleetError
from fleet.spec import JobSpec

JobState = Literal["running", "stalled", "restarting", "pending", "failed", "completed"]
Phase = Literal["training", "checkpointing"]

# Idle states still hold (or wait for) the gang's GPUs, so their time counts as lost.
LOSING_STATES: frozenset[JobState] = frozenset({"stalled", "restarting", "pending"})

_EPS = 1e-9

JobEvent = tuple[datetime, str]

CHECKPOINTS_KEPT = 8
"""Durable checkpoints a job keeps (newest last): a restart may pick one from before a corruption."""


class CheckpointRecord(BaseModel):
    """A durable checkpoint: the step it holds and when its write finished."""

    step: int
    at: datetime


class NoCheckpointError(FleetError):
    """No kept checkpoint at or before the step asked for."""


class NodeReplacement(BaseModel):
    """A gang member the scheduler swapped out before a restart."""

    time: datetime
    old: str
    new: str
    reason: str


class TrainingJob(BaseModel):
    name: str
    nodes: list[str] = Field(description="the gang, in rank order")
    gpus_per_node: int
    gpu_offset: int = Field(
        default=0, ge=0, description="its first GPU on each node (another job may hold the rest)"
    )
    state: JobState = "running"
    step: int = 0
    step_time_s: float
    checkpoint_interval_s: float
    checkpoint_write_s: float
    restart_overhead_s: float
    last_checkpoint_step: int = 0
    last_checkpoint_at: datetime | None = None
    checkpoints: list[CheckpointRecord] = Field(
        default_factory=list, description=f"the last {CHECKPOINTS_KEPT} durable checkpoints, oldest first"
    )
    restarts: int = 0
    gpu_hours_lost: float = 0.0
    stalled_since: datetime | None = None
    stall_reason: str | None = None
    pending_since: datetime | None = None
    restart_ready_at: datetime | None = None
    replacements: list[NodeReplacement] = Field(default_factory=list)
    pid_base: int = Field(description="pid of rank 0's process; rank r runs as pid_base + r")
    # Progress-model state (see the module docstring).
    phase: Phase = "training"
    phase_elapsed_s: float = 0.0
    checkpoint_in_flight_step: int | None = None
    step_carry_s: float = Field(default=0.0, description="training time into the current, unfinished step")
    work_since_checkpoint_s: float = Field(default=0.0, description="running time a restart now discards")
    restart_remaining_s: float = 0.0

    @classmethod
    def from_spec(
        cls, spec: JobSpec, nodes: list[str], gpus_per_node: int, pid_base: int, gpu_offset: int = 0
    ) -> TrainingJob:
        return cls(
            name=spec.name,
            nodes=list(nodes),
            gpus_per_node=spec.gpus_per_node or gpus_per_node,
            gpu_offset=gpu_offset,
            step_time_s=spec.step_time_s,
            checkpoint_interval_s=spec.checkpoint_interval_s,
            checkpoint_write_s=spec.checkpoint_write_s,
            restart_overhead_s=spec.restart_overhead_s,
            pid_base=pid_base,
        )

    @property
    def gpus(self) -> int:
        return len(self.nodes) * self.gpus_per_node

    @property
    def active(self) -> bool:
        """Not finished: the job still owns its gang."""
        return self.state not in ("failed", "completed")

    @property
    def gpu_indices(self) -> range:
        """The GPUs it uses on each of its nodes."""
        return range(self.gpu_offset, self.gpu_offset + self.gpus_per_node)

    def uses(self, node: str, gpu: int) -> bool:
        return node in self.nodes and gpu in self.gpu_indices

    def rank_of(self, node: str, gpu: int) -> int:
        """The rank on ``node``'s GPU ``gpu`` (ranks run node by node, GPU by GPU)."""
        return self.nodes.index(node) * self.gpus_per_node + gpu - self.gpu_offset

    def place_of(self, rank: int) -> tuple[str, int]:
        """(node, GPU index) of ``rank``."""
        return self.nodes[rank // self.gpus_per_node], self.gpu_offset + rank % self.gpus_per_node

    def pid_for(self, node: str, gpu: int) -> int:
        """The pid of the rank on ``node``'s GPU ``gpu`` (one process per GPU)."""
        return self.pid_base + self.rank_of(node, gpu)

    def checkpoint_age_s(self, now: datetime) -> float | None:
        return None if self.last_checkpoint_at is None else (now - self.last_checkpoint_at).total_seconds()

    # -- time ---------------------------------------------------------------------------------------

    def advance(self, start: datetime, seconds: float) -> list[JobEvent]:
        """Move the job ``seconds`` forward from ``start``; returns notable transitions."""
        events: list[JobEvent] = []
        t = 0.0
        while seconds - t > _EPS and self.active:
            left = seconds - t
            if self.state == "running":
                self._run(start, t, left)
                t = seconds
            elif self.state == "restarting":
                d = min(left, self.restart_remaining_s)
                self._lose(d)
                self.restart_remaining_s -= d
                t += d
                if self.restart_remaining_s <= _EPS:
                    self._resume()
                    events.append((start + timedelta(seconds=t), f"{self.name} resumed at step {self.step}"))
            else:  # stalled or pending
                self._lose(left)
                t = seconds
        return events

    def _lose(self, seconds: float) -> None:
        self.gpu_hours_lost += self.gpus * seconds / 3600.0

    def _run(self, start: datetime, offset: float, seconds: float) -> None:
        t, end = offset, offset + seconds
        while end - t > _EPS:
            if self.phase == "training":
                d = min(end - t, self.checkpoint_interval_s - self.phase_elapsed_s)
                self._train(d)
                t += d
                if self.checkpoint_interval_s - self.phase_elapsed_s <= _EPS:
                    self.phase, self.phase_elapsed_s = "checkpointing", 0.0
                    self.checkpoint_in_flight_step = self.step
            else:
                d = min(end - t, self.checkpoint_write_s - self.phase_elapsed_s)
                self.phase_elapsed_s += d
                self.work_since_checkpoint_s += d
                t += d
            if self.phase == "checkpointing" and self.checkpoint_write_s - self.phase_elapsed_s <= _EPS:
                self._checkpoint_done(start + timedelta(seconds=t))

    def _train(self, seconds: float) -> None:
        self.phase_elapsed_s += seconds
        self.work_since_checkpoint_s += seconds
        carry = self.step_carry_s + seconds
        steps = math.floor(carry / self.step_time_s + _EPS)
        self.step += steps
        self.step_carry_s = max(0.0, carry - steps * self.step_time_s)

    def _checkpoint_done(self, at: datetime) -> None:
        assert self.checkpoint_in_flight_step is not None
        self.last_checkpoint_step = self.checkpoint_in_flight_step
        self.last_checkpoint_at = at
        self.checkpoints = [*self.checkpoints, CheckpointRecord(step=self.last_checkpoint_step, at=at)][
            -CHECKPOINTS_KEPT:
        ]
        self.checkpoint_in_flight_step = None
        self.work_since_checkpoint_s = 0.0
        self.phase, self.phase_elapsed_s = "training", 0.0

    def _resume(self) -> None:
        self.state = "running"
        self.restart_remaining_s = 0.0
        self.restart_ready_at = None

    # -- transitions ------------------------------------------------------------------------------

    def stall(self, at: datetime, reason: str) -> bool:
        """A GPU or process of the gang failed: progress stops. False when already not progressing."""
        if self.state not in ("running", "restarting"):
            return False
        self.state = "stalled"
        self.stalled_since, self.stall_reason = at, reason
        self.restart_remaining_s, self.restart_ready_at = 0.0, None
        return True

    def checkpoint_at_or_before(self, step: int) -> CheckpointRecord:
        """The newest kept checkpoint holding a step <= ``step``; ``NoCheckpointError`` if none."""
        found = [c for c in self.checkpoints if c.step <= step]
        if not found:
            kept = ", ".join(str(c.step) for c in self.checkpoints) or "none"
            raise NoCheckpointError(
                f"{self.name} keeps no checkpoint at or before step {step} (kept checkpoints: steps {kept})"
            )
        return found[-1]

    def rewind_to_checkpoint(self, at_or_before_step: int | None = None) -> tuple[int, float]:
        """Discard the progress since the last durable checkpoint, or since the newest one at or
        before ``at_or_before_step`` (the newer checkpoints are dropped: they belong to the discarded
        run); returns (steps, running seconds) discarded."""
        target = self.last_checkpoint_step
        older_work_s = 0.0
        if at_or_before_step is not None:
            chosen = self.checkpoint_at_or_before(at_or_before_step)
            target = chosen.step
            older_work_s = (self.last_checkpoint_step - chosen.step) * self.step_time_s
            self.checkpoints = [c for c in self.checkpoints if c.step <= chosen.step]
            self.last_checkpoint_step, self.last_checkpoint_at = chosen.step, chosen.at
        lost_steps = self.step - target
        lost_work_s = self.work_since_checkpoint_s + older_work_s
        self._lose(lost_work_s)
        self.step = target
        self.step_carry_s = self.work_since_checkpoint_s = 0.0
        self.phase, self.phase_elapsed_s, self.checkpoint_in_flight_step = "training", 0.0, None
        return lost_steps, lost_work_s

    def begin_restart(self, at: datetime) -> None:
        """The gang is placed: spend the restart overhead, then resume."""
        self.state = "restarting"
        self.restart_remaining_s = self.restart_overhead_s
        self.restart_ready_at = at + timedelta(seconds=self.restart_overhead_s)
        self.stalled_since = self.stall_reason = self.pending_since = None
        if self.restart_overhead_s <= _EPS:
            self._resume()

    def wait_for_capacity(self, at: datetime, reason: str) -> None:
        """The gang cannot be placed: wait in ``pending`` until capacity appears."""
        self.state = "pending"
        self.pending_since, self.stall_reason = at, reason
        self.stalled_since = None
