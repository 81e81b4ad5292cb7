"""How often the simulated hardware fails, and where: published rates, concentrated on a few lemons.

Every rate is per GPU-hour and comes from ../shared/domain/failure-rates.md, which converts the
published figures to common units; the source is named next to each number. Faults are drawn as a
Poisson process per class; within a class, a few "lemon" GPUs carry most of the draws, as on NCSA
Delta (>90% of Xid 95 from 4 GPUs; one GPU with 99% of the uncontained memory errors) and at Meta
(removing ~40 lemon nodes cut large-job failures from 14% to 4%).

Precursors (``precursors=True``; off by default, so a model without them draws exactly as before):
some faults announce themselves. A drawn fault of a class in ``PRECURSORS`` comes, with the class's
share, as a precursor now (corrected-ECC bursts and retired pages for HBM, which DCGM counts toward
its 15 / 63 retired-page limits; recurring light throttling for thermal faults) and the fault itself
``lead`` hours later (exponential, mean ``precursor_lead_h``). The shares and the lead time are
ASSUMPTIONS: the published data (xid-and-dcgm.md, failure-rates.md) name these signals, not how often
they come first. A faulty GPU's precursor is its own earlier faults (the lemon rule), which the
lemon concentration already models.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

FaultClass = Literal["faulty_gpu", "hbm", "network", "software", "hang", "thermal"]
GpuRef = tuple[str, int]


@dataclass(frozen=True)
class FailureRate:
    per_gpu_hour: float
    source: str


# Llama 3 Table 5 (Meta, "The Llama 3 Herd of Models", §3.3.4: 16,384 H100, 54 days), counts
# recomputed in failure-rates.md "Mix of causes"; the total is ~2e-5 per GPU-hour (~4 per 1000
# node-days), within the 2.3-6.5 per 1000 node-days of Meta RSC-1/RSC-2.
RATES: dict[FaultClass, FailureRate] = {
    "faulty_gpu": FailureRate(7.0e-6, "Llama 3 Table 5: faulty GPU 35.3% (Xid 79, 119/120, 74, 109)"),
    "hbm": FailureRate(3.4e-6, "Llama 3 Table 5: HBM memory 17.2% (Xid 48, 63/64, 94/95, DBE counters)"),
    "software": FailureRate(2.5e-6, "Llama 3 Table 5: software bug 12.9% (application Xids)"),
    "network": FailureRate(1.65e-6, "Llama 3 Table 5: network switch / cable 8.4% (throughput loss)"),
    "hang": FailureRate(3.3e-7, "Llama 3 Table 5: NCCL watchdog timeout, cause unknown 1.7%"),
    "thermal": FailureRate(2.8e-7, "Llama 3 Table 5: thermal interface / sensor 1.4% (throttling)"),
}

# NCSA Delta ("Characterizing GPU Resilience and Impact on AI/HPC Systems"): >90% of the raw Xid 95
# events came from 4 GPUs. LEMON_SHARE is that share; the per-lemon multiplier follows from it.
LEMON_SHARE = 0.9
LEMON_SOURCE = "NCSA Delta: >90% of Xid 95 from 4 bad GPUs (failure-rates.md, raw Xid event rates)"
# Delta's raw Xid 95 rate, 2.2e-3 per GPU-hour (A100), is 10-100x the failure rates: most raw
# events are repeats from lemons. Used for the SBE/contained-error chatter of a lemon.
LEMON_RAW_ERRORS_PER_GPU_HOUR = 2.2e-3

# Of the network class, what a bad link does: "without adaptive routing a bad link can cost over
# half the bandwidth of jobs that cross it" (failure-rates.md, "Hangs, network, stragglers").
DEGRADED_LINK_COMM_FACTOR = 2.0
# "A typical slow host is ~10% slower"; a bad machine's straggler slowdown is ~3x (ByteDance
# straggler study, OSDI '25). A throttled GPU sits in between.
THERMAL_THROTTLE_FACTOR = 1.6

# Lemons concentrate the GPU's own failures; a switch or a software bug is no GPU's fault.
LEMON_CLASSES: frozenset[FaultClass] = frozenset({"faulty_gpu", "hbm", "thermal"})

PrecursorKind = Literal["sbe_burst", "retired_pages", "throttle"]


@dataclass(frozen=True)
class Precursor:
    share: float  # ASSUMPTION: the share of the class's faults that show the precursor first
    kinds: tuple[PrecursorKind, ...]
    signal: str


PRECURSORS: dict[FaultClass, Precursor] = {
    "hbm": Precursor(0.5, ("sbe_burst", "retired_pages"), "corrected-ECC bursts, retired pages climbing"),
    "thermal": Precursor(0.7, ("throttle",), "recurring thermal throttling"),
}
PRECURSOR_LEAD_H = 24.0  # ASSUMPTION: mean warning time
PRECURSOR_THROTTLE_FACTOR = 1.15  # a light throttle: below the straggler detector's 3x, above noise
PRECURSOR_SBE_COUNT = 50
PRECURSOR_RETIRED_PAGES = 16  # just past DCGM's soft warning of 15 retired pages

FAULTY_GPU_XIDS: tuple[int, ...] = (79, 119, 74, 109)
SOFTWARE_XIDS: tuple[int, ...] = (13, 31)


@dataclass(frozen=True)
class FaultDraw:
    """One fault the model decided should happen now."""

    cls: FaultClass
    node: str
    gpu: int
    xid: int | None = None
    precursor: PrecursorKind | None = None  # a warning of a fault to come, not the fault


@dataclass
class FailureModel:
    """Draws faults for a fleet over simulated time.

    ``acceleration`` multiplies every rate (real rates give a 128-GPU twin about one fault a
    fortnight; evals and demos speed that up). ``lemons`` GPUs are chosen once from ``gpus`` and
    carry ``LEMON_SHARE`` of the draws of every class.
    """

    gpus: Sequence[GpuRef]
    rng: random.Random
    lemons: int = 4
    acceleration: float = 1.0
    rates: dict[FaultClass, FailureRate] = field(default_factory=lambda: dict(RATES))
    precursors: bool = False
    precursor_lead_h: float = PRECURSOR_LEAD_H
    lemon_gpus: list[GpuRef] = field(init=False)
    elapsed_h: float = field(init=False, default=0.0)
    pending: list[tuple[float, FaultDraw]] = field(init=False, default_factory=list)
    """Faults announced by a precursor, with the model hour they strike at."""

    def __post_init__(self) -> None:
        if self.acceleration < 0:
            raise ValueError(f"acceleration must be >= 0, got {self.acceleration}")
        count = min(self.lemons, len(self.gpus))
        self.lemon_gpus = sorted(self.rng.sample(list(self.gpus), count)) if count else []

    @property
    def lemon_multiplier(self) -> float:
        """How much more often a lemon fails than another GPU, so lemons carry ``LEMON_SHARE``."""
        lemons, others = len(self.lemon_gpus), len(self.gpus) - len(self.lemon_gpus)
        if not lemons or not others:
            return 1.0
        return LEMON_SHARE * others / ((1 - LEMON_SHARE) * lemons)

    def is_lemon(self, node: str, gpu: int) -> bool:
        return (node, gpu) in self.lemon_gpus

    def expected(self, cls: FaultClass, hours: float) -> float:
        """Expected faults of ``cls`` in the whole fleet over ``hours``."""
        return self.rates[cls].per_gpu_hour * len(self.gpus) * hours * self.acceleration

    def draw(self, hours: float) -> list[FaultDraw]:
        """The faults of ``hours`` of simulated time, in class order (deterministic under the rng)."""
        if hours <= 0 or not self.gpus:
            return []
        start, self.elapsed_h = self.elapsed_h, self.elapsed_h + hours
        draws: list[FaultDraw] = []
        for cls in self.rates:
            for _ in range(_poisson(self.rng, self.expected(cls, hours))):
                node, gpu = self._pick(lemons=cls in LEMON_CLASSES)
                xid = None
                if cls == "faulty_gpu":
                    xid = self.rng.choice(FAULTY_GPU_XIDS)
                elif cls == "software":
                    xid = self.rng.choice(SOFTWARE_XIDS)
                draws.append(FaultDraw(cls=cls, node=node, gpu=gpu, xid=xid))
        if not self.precursors:
            return draws
        return self._with_precursors(draws, start)

    def _with_precursors(self, draws: list[FaultDraw], start: float) -> list[FaultDraw]:
        """Faults due from earlier precursors, then this interval's: each announced one replaced by
        its precursor now and queued for later."""
        due = [d for at, d in self.pending if at <= self.elapsed_h]
        self.pending = [(at, d) for at, d in self.pending if at > self.elapsed_h]
        out = list(due)
        for draw in draws:
            warn = PRECURSORS.get(draw.cls)
            if warn is None or self.rng.random() >= warn.share:
                out.append(draw)
                continue
            kind = self.rng.choice(warn.kinds)
            out.append(FaultDraw(cls=draw.cls, node=draw.node, gpu=draw.gpu, precursor=kind))
            lead = self.rng.expovariate(1 / self.precursor_lead_h)
            self.pending.append((start + lead, draw))
        return out

    def _pick(self, *, lemons: bool) -> GpuRef:
        if lemons and self.lemon_gpus and self.rng.random() < LEMON_SHARE:
            return self.rng.choice(self.lemon_gpus)
        return self.rng.choice(list(self.gpus))


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method for small means, a normal approximation for large ones."""
    if mean <= 0:
        return 0
    if mean > 50:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


class _Injectable(Protocol):
    """The fault API of ``fleet.FleetTwin`` that ``apply_draw`` uses."""

    def inject_xid(self, node: str, gpu: int, xid: int) -> list[str]: ...

    def inject_ecc(
        self, node: str, gpu: int, kind: Literal["dbe", "sbe_burst", "retired_pages"], count: int = ...
    ) -> list[str]: ...

    def inject_hang(self, job: str, rank: int | None = None) -> int: ...

    def degrade_link(self, leaf: str, factor: float = ...) -> None: ...

    def throttle_gpu(self, node: str, gpu: int, factor: float = ...) -> None: ...

    def leaf_of(self, node: str) -> str: ...

    def rank_on(self, node: str, gpu: int) -> tuple[str, int] | None: ...


def apply_draw(twin: _Injectable, draw: FaultDraw) -> None:
    """Make a drawn fault happen on the twin, with the signal its class produces."""
    if draw.precursor == "throttle":
        twin.throttle_gpu(draw.node, draw.gpu, PRECURSOR_THROTTLE_FACTOR)
    elif draw.precursor is not None:
        count = PRECURSOR_SBE_COUNT if draw.precursor == "sbe_burst" else PRECURSOR_RETIRED_PAGES
        twin.inject_ecc(draw.node, draw.gpu, draw.precursor, count)
    elif draw.xid is not None:
        twin.inject_xid(draw.node, draw.gpu, draw.xid)
    elif draw.cls == "hbm":
        twin.inject_ecc(draw.node, draw.gpu, "dbe")
    elif draw.cls == "network":
        twin.degrade_link(twin.leaf_of(draw.node), DEGRADED_LINK_COMM_FACTOR)
    elif draw.cls == "thermal":
        twin.throttle_gpu(draw.node, draw.gpu, THERMAL_THROTTLE_FACTOR)
    elif draw.cls == "hang" and (where := twin.rank_on(draw.node, draw.gpu)) is not None:
        twin.inject_hang(*where)
