"""Training numerics of the twin's jobs, and silent data corruption (SDC) of a GPU.

Each job reports its loss (the same reduced value on every rank) and each rank its own gradient
norm before the all-reduce. Both are deterministic functions of (job, step, rank): a decreasing
curve with small noise, so a restart that rewinds to an earlier step retraces the same values.

An SDC fault makes a GPU compute wrong results with no Xid and no ECC error. From its onset the
job it runs in is *poisoned*: ``nan`` makes the loss (and the bad rank's gradient norm) NaN;
``spike`` makes the loss jump and the bad rank's gradient norm sit far above the other ranks'.
Poison lives in the model's weights, so it outlives the fault: it is cured only by restoring a
checkpoint written at or before the first corrupted step (a later checkpoint holds the corrupted
weights too). A ``transient`` fault corrupts once (the GPU is fine afterwards); a persistent one
corrupts again whenever the GPU computes for a job, until it is isolated.

Silent data corruption shows in no counter: DCGM's diagnostics catch it only at run level 3 and
above, where the ``diagnostic`` plugin (GEMM with known answers) and ``targeted_stress`` run
(``fleet.diagnostics``).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Literal

from fleet.jobs import TrainingJob

SdcMode = Literal["nan", "spike"]

LOSS_FLOOR = 1.8
LOSS_SCALE = 8.0
LOSS_NOISE = 0.01
"""Relative noise of the loss around its curve (normal training: no spike)."""
GRAD_NOISE = 0.05
SPIKE_LOSS = 4.0
"""How many times its curve a spiking loss reads."""
SPIKE_GRAD = 60.0
"""How many times the healthy ranks' gradient norm the bad rank's reads."""


def _unit(*parts: object) -> float:
    """A deterministic number in [-1, 1) from ``parts`` (no generator state: a rewind replays it)."""
    return zlib.crc32("\x1f".join(map(str, parts)).encode()) / 2**31 - 1.0


def loss_curve(job: str, step: int) -> float:
    """The job's healthy loss at ``step``: decreasing, with ``LOSS_NOISE`` relative noise."""
    base = LOSS_FLOOR + LOSS_SCALE / math.sqrt(1.0 + step / 200.0)
    return base * (1.0 + LOSS_NOISE * _unit("loss", job, step))


def grad_curve(job: str, step: int, rank: int) -> float:
    """A healthy rank's gradient norm at ``step``."""
    base = 0.5 + 2.0 / math.sqrt(1.0 + step / 200.0)
    return base * (1.0 + GRAD_NOISE * _unit("grad", job, step, rank))


@dataclass
class SdcFault:
    """A GPU that computes wrong results."""

    node: str
    gpu: int
    mode: SdcMode
    transient: bool
    spent: bool = False
    """A transient fault corrupts once: spent after its first corruption."""


@dataclass
class Poison:
    """A job's corrupted state: since ``first_bad_step``, from the fault on ``node``/``gpu``."""

    first_bad_step: int
    mode: SdcMode
    node: str
    gpu: int


@dataclass
class JobNumerics:
    """Every SDC fault of the fleet and the jobs they poisoned."""

    faults: dict[tuple[str, int], SdcFault] = field(default_factory=dict)
    poisoned: dict[str, Poison] = field(default_factory=dict)

    def inject(self, job: TrainingJob | None, fault: SdcFault) -> None:
        """Make ``fault``'s GPU corrupt; a job computing on it now is poisoned at its current step."""
        self.faults[(fault.node, fault.gpu)] = fault
        if job is not None:
            self.corrupt(job)

    def corrupt(self, job: TrainingJob) -> None:
        """Poison ``job`` if it trains on a GPU with a live fault (and is not poisoned already)."""
        if job.name in self.poisoned or job.state != "running":
            return
        for (node, gpu), fault in self.faults.items():
            if fault.spent or not job.uses(node, gpu):
                continue
            self.poisoned[job.name] = Poison(job.step + 1, fault.mode, node, gpu)
            fault.spent = fault.transient
            return

    def isolated(self, node: str, gpu: int) -> None:
        """The GPU was taken out of service: it computes for nobody any more."""
        self.faults.pop((node, gpu), None)

    def rewound(self, job: TrainingJob) -> None:
        """``job`` restored a checkpoint: a checkpoint from before the corruption cures it."""
        poison = self.poisoned.get(job.name)
        if poison is not None and job.step < poison.first_bad_step:
            del self.poisoned[job.name]

    def faulty(self, node: str, gpu: int) -> SdcFault | None:
        """The live (not spent) fault of that GPU, if any: what diagnostics find."""
        fault = self.faults.get((node, gpu))
        return fault if fault is not None and not fault.spent else None

    # -- what the ranks report ---------------------------------------------------------------------

    def _poison(self, job: TrainingJob) -> Poison | None:
        poison = self.poisoned.get(job.name)
        return poison if poison is not None and job.step >= poison.first_bad_step else None

    def loss(self, job: TrainingJob) -> float:
        poison = self._poison(job)
        healthy = loss_curve(job.name, job.step)
        if poison is None:
            return healthy
        return math.nan if poison.mode == "nan" else healthy * SPIKE_LOSS

    def grad_norm(self, job: TrainingJob, rank: int, node: str, gpu: int) -> float:
        poison = self._poison(job)
        healthy = grad_curve(job.name, job.step, rank)
        if poison is None or (poison.node, poison.gpu) != (node, gpu):
            return healthy if poison is None or poison.mode == "spike" else math.nan
        return math.nan if poison.mode == "nan" else healthy * SPIKE_GRAD
