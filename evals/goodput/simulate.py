"""A discrete-event simulation of one large synchronous training job on a fleet, for 30 days.

Every job-interrupting failure stops the whole job (data-parallel gang). The job loses the work
since its last completed checkpoint, waits while the operator detects and recovers, pays the restart
overhead, and trains on. Checkpoints block for ``checkpoint_write_s`` every ``checkpoint_interval_s``
of training. A persistent fault (bad hardware) takes a node out: it needs a spare, and goes to
repair. ETTR = productive training time / wall time (productive: trained and never rolled back).

Simplifications, stated: failures that arrive while the job is already down cost no extra work and
do not extend the downtime (they still count as incidents and consume spares); the job never runs
degraded on fewer nodes.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass

from evals.goodput.causes import CAUSES, Cause
from evals.goodput.operators import HOUR, Operator, lognormal

DAY = 86_400.0


@dataclass(frozen=True)
class FleetCase:
    gpus: int
    failures_per_1000_node_days: float = 4.0  # failure-rates.md default; sweep 2.3-6.5
    checkpoint_interval_s: float | None = None  # None: Young's optimum for this fleet
    checkpoint_write_s: float = 10.0  # failure-rates.md: ~10 s blocking write at 10k+ GPUs
    restart_overhead_s: float = 10 * 60.0  # failure-rates.md: 5-15 min restart overhead
    days: float = 30.0
    gpus_per_node: int = 8
    spares_per_1024_nodes: float = 4.0  # ByteRobust: P99 of a binomial model, ~4 per 1,024 machines
    repair_median_s: float = 2.2 * HOUR  # Delta: mean recovery 2.2 h

    @property
    def nodes(self) -> int:
        return self.gpus // self.gpus_per_node

    @property
    def spares(self) -> int:
        return max(1, math.ceil(self.nodes * self.spares_per_1024_nodes / 1024))

    @property
    def failure_rate_per_s(self) -> float:
        return self.nodes * self.failures_per_1000_node_days / 1000 / DAY

    @property
    def interval_s(self) -> float:
        """The checkpoint interval: given, or Young's Δt* = √(2w / (N·r_f))."""
        if self.checkpoint_interval_s is not None:
            return self.checkpoint_interval_s
        return math.sqrt(2 * self.checkpoint_write_s / self.failure_rate_per_s)


@dataclass
class RunResult:
    operator: str
    gpus: int
    failures_per_1000_node_days: float
    checkpoint_interval_s: float
    seed: int
    wall_s: float = 0.0
    productive_s: float = 0.0
    lost_work_s: float = 0.0
    downtime_s: float = 0.0
    checkpoint_s: float = 0.0
    incidents: int = 0
    interruptions: int = 0
    needed_person: int = 0
    escalated: int = 0
    failed_restarts: int = 0
    spare_shortfalls: int = 0

    @property
    def ettr(self) -> float:
        return self.productive_s / self.wall_s

    @property
    def gpu_hours_lost(self) -> float:
        """GPU-hours of the job not spent on productive training (failures and checkpoints)."""
        return (self.wall_s - self.productive_s) * self.gpus / HOUR

    @property
    def gpu_hours_lost_to_failures(self) -> float:
        return (self.lost_work_s + self.downtime_s) * self.gpus / HOUR


def _pick(causes: tuple[Cause, ...], rng: random.Random) -> Cause:
    x, acc = rng.random() * sum(c.share for c in causes), 0.0
    for cause in causes:
        acc += cause.share
        if x < acc:
            return cause
    return causes[-1]


def _train(result: RunResult, since_ckpt: float, wall: float, interval: float, write: float) -> float:
    """Train for ``wall`` seconds from ``since_ckpt`` seconds past the last checkpoint; returns the
    new ``since_ckpt`` (a value above ``interval`` means a checkpoint write is in flight)."""
    cycle = interval + write
    pos = since_ckpt + wall
    full, rest = divmod(pos, cycle)
    trained = wall - (full * write) - max(0.0, rest - interval) + max(0.0, since_ckpt - interval)
    result.checkpoint_s += wall - trained
    result.productive_s += trained
    return rest


def simulate(case: FleetCase, operator: Operator, seed: int, causes: tuple[Cause, ...] = CAUSES) -> RunResult:
    rng = random.Random(seed)
    interval, write = case.interval_s, case.checkpoint_write_s
    horizon = case.days * DAY
    result = RunResult(
        operator.name, case.gpus, case.failures_per_1000_node_days, interval, seed, wall_s=horizon
    )
    spares = case.spares
    repairs: list[float] = []  # times at which repaired nodes rejoin the spare pool
    t, since_ckpt, running_from = 0.0, 0.0, 0.0
    while True:
        t += rng.expovariate(case.failure_rate_per_s)
        if t >= horizon:
            break
        while repairs and repairs[0] <= t:
            heapq.heappop(repairs)
            spares += 1
        cause = _pick(causes, rng)
        result.incidents += 1
        spare_ready = spares > 0
        if cause.persistent:
            if spare_ready:
                spares -= 1
            else:
                result.spare_shortfalls += 1
            heapq.heappush(repairs, t + lognormal(rng, case.repair_median_s, 0.5))
        if t < running_from:
            continue  # the job is already down for an earlier failure
        since_ckpt = _train(result, since_ckpt, t - running_from, interval, write)
        lost = since_ckpt if since_ckpt <= interval else interval  # a write in flight is lost too
        result.productive_s -= lost
        result.lost_work_s += lost
        response = operator.respond(cause.signal, cause.persistent, spare_ready, rng)
        down = (
            response.detect_s + response.recover_s + case.restart_overhead_s * (1 + response.failed_restarts)
        )
        result.downtime_s += down
        result.interruptions += 1
        result.needed_person += response.needed_person
        result.escalated += response.escalated
        result.failed_restarts += response.failed_restarts
        since_ckpt, running_from = 0.0, t + down
    if running_from < horizon:
        _train(result, since_ckpt, horizon - running_from, interval, write)
    return result
