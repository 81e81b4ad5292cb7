"""DCGM active diagnostics (``dcgmi diag -r <level>``) on the twin's nodes.

Levels follow NVIDIA's ``dcgmi diag`` reference: 1 quick deployment checks (seconds), 2 medium
validation (about two minutes), 3 long hardware diagnostics (about 15 minutes), 4 extended (longer).
Each level runs the tests of the one below and more. Wrong compute results (silent data corruption)
are caught only from level 3, where the ``diagnostic`` plugin runs GEMMs with known answers and
``targeted_stress`` holds the GPU at a target load; a GPU in error or off the bus fails at level 1
already (the ``software`` deployment checks cannot even use it).

A run needs the node's GPUs idle (the tests take the whole GPU): it is refused while a running job
computes on them. It takes its level's simulated time; the result is read once it has finished.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

DiagLevel = Literal[1, 2, 3, 4]

TESTS: dict[int, tuple[str, ...]] = {
    1: ("software",),
    2: ("software", "pcie", "memory"),
    3: ("software", "pcie", "memory", "diagnostic", "targeted_stress", "targeted_power", "memory_bandwidth"),
    4: (
        "software", "pcie", "memory", "diagnostic", "targeted_stress", "targeted_power",
        "memory_bandwidth", "memtest", "pulse_test",
    ),
}  # fmt: skip
DURATION_S: dict[int, float] = {1: 30.0, 2: 120.0, 3: 900.0, 4: 3600.0}
SDC_TESTS = ("diagnostic", "targeted_stress")
"""The plugins that see wrong compute results (level 3 and above)."""
BROKEN_TESTS = ("software",)
"""What a GPU in error or off the bus fails first (level 1)."""


class GpuDiagnosis(BaseModel):
    gpu: int
    passed: bool
    failed_tests: list[str] = Field(default_factory=list)


class DiagnosticRun(BaseModel):
    """One ``dcgmi diag`` run on a node: running until ``finishes_at``, then each GPU's verdict."""

    node: str
    level: DiagLevel
    tests: list[str]
    started_at: datetime
    finishes_at: datetime
    duration_s: float
    gpus: list[GpuDiagnosis] = Field(default_factory=list, description="filled when the run finished")
    reason: str = ""

    def finished(self, now: datetime) -> bool:
        return now >= self.finishes_at

    @property
    def failing(self) -> list[int]:
        return [g.gpu for g in self.gpus if not g.passed]


def start_run(node: str, level: DiagLevel, now: datetime, reason: str) -> DiagnosticRun:
    duration = DURATION_S[level]
    return DiagnosticRun(
        node=node,
        level=level,
        tests=list(TESTS[level]),
        started_at=now,
        finishes_at=now + timedelta(seconds=duration),
        duration_s=duration,
        reason=reason,
    )


def verdict(level: int, *, broken: bool, corrupts: bool) -> GpuDiagnosis:
    """One GPU's result at ``level``: ``broken`` = in error or off the bus; ``corrupts`` = it has a
    live silent-data-corruption fault (``gpu`` is filled in by the caller)."""
    failed: list[str] = []
    if broken:
        failed += [t for t in BROKEN_TESTS if t in TESTS[level]]
    if corrupts:
        failed += [t for t in SDC_TESTS if t in TESTS[level]]
    return GpuDiagnosis(gpu=0, passed=not failed, failed_tests=failed)


class NodeDiagnostics:
    """The twin's diagnostic runs, the latest per node. ``busy(node)`` says whether a running job
    holds the node's GPUs; ``health(node)`` gives each GPU's (index, broken, corrupts)."""

    def __init__(self) -> None:
        self.runs: dict[str, DiagnosticRun] = {}

    def start(
        self, node: str, level: DiagLevel, now: datetime, reason: str, gpus: list[tuple[int, bool, bool]]
    ) -> tuple[DiagnosticRun, bool]:
        """Start a run unless one is still going on the node; returns (run, started)."""
        current = self.runs.get(node)
        if current is not None and not current.finished(now):
            return current, False
        run = start_run(node, level, now, reason)
        run.gpus = [
            verdict(level, broken=broken, corrupts=corrupts).model_copy(update={"gpu": index})
            for index, broken, corrupts in gpus
        ]
        self.runs[node] = run
        return run, True

    def latest(self, node: str, now: datetime) -> tuple[DiagnosticRun | None, bool]:
        """The node's latest run and whether it has finished (its GPUs' verdicts are final)."""
        run = self.runs.get(node)
        return run, run is not None and run.finished(now)
