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

import bisect
import heapq
import math
import random
from dataclasses import dataclass
from typing import Literal

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
    spares: int = 0
    spare_wait_s: float = 0.0
    drains_avoided: int = 0
    false_drains: int = 0

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


@dataclass(frozen=True)
class Levers:
    """The platform's levers the study switches on one at a time (defaults: all off).

    ``spares``: the warm pool size (the spare advice); None keeps the case's ~4 per 1,024 nodes.
    ``precursors``: pre-emptive removal — a failure of a cause with a precursor (``Cause.precursor``)
    warns ``lead`` seconds ahead (exponential, mean ``precursor_lead_mean_s``). ``precursor_policy``
    says what the platform does with a flagged node: ``next_restart`` swaps it out at the job's next
    stop (any interruption), never stopping the job for it — the failure is avoided when the job
    stopped between the warning and the crash and a spare was free; ``drain`` stops the job at its
    next checkpoint boundary (no work lost; needs one checkpoint cycle of warning and a free spare).
    ``next_stop_or_drain`` is what the agent does (``agents/preemptive.py``): swap at the job's next
    stop if one comes within ``precursor_drain_after_s`` of the flag, else drain at the checkpoint
    boundary after that (needs that much warning plus a cycle; a false flag then costs a restart).
    ``false_drains_per_catch`` healthy nodes are flagged with every true catch: each takes a spare
    out for ``false_drain_verify_s`` and, under ``drain``, costs the job a planned restart. ``fast_repair``: a removed node first gets the platform's reset /
    reboot and verification (``fast_repair_s``), which fixes ``Cause.reset_fixes`` of them; the rest
    (and every node without the lever) go to a person's repair (lognormal, the case's median)."""

    spares: int | None = None
    precursors: bool = False
    precursor_policy: Literal["next_restart", "drain", "next_stop_or_drain"] = "next_restart"
    precursor_drain_after_s: float = 6 * HOUR  # next_stop_or_drain: drain when no stop came by then
    precursor_lead_mean_s: float = 24 * HOUR  # ASSUMPTION: precursors show a day ahead on average
    false_drains_per_catch: float = 1.0  # ASSUMPTION: precision 0.5
    false_drain_verify_s: float = 2 * HOUR  # ASSUMPTION: drain, diagnostics (DCGM diag), return
    fast_repair: bool = False
    fast_repair_s: float = 480.0 + 30 * 60.0  # the twin's HGX reboot (480 s) + 30 min verification
    numerics: bool = False
    """The numerics detector and the ``locate-corruption`` runbook (silent data corruption): the
    operator's concern (``GpuAiops.numerics_recall``); the study sets it from this flag."""


def simulate(
    case: FleetCase,
    operator: Operator,
    seed: int,
    causes: tuple[Cause, ...] = CAUSES,
    levers: Levers = Levers(),
) -> RunResult:
    """One run. The failures (times, causes, repair draws, precursor draws) come from their own
    random stream under ``seed``, so every operator and lever setting meets the same failures; the
    operator's response times and the false drains have streams of their own."""
    rng = random.Random(seed)
    respond_rng = random.Random(seed + 1_000_003)
    false_rng = random.Random(seed + 2_000_003)
    interval, write = case.interval_s, case.checkpoint_write_s
    horizon = case.days * DAY
    result = RunResult(
        operator.name, case.gpus, case.failures_per_1000_node_days, interval, seed, wall_s=horizon
    )
    spares = case.spares if levers.spares is None else levers.spares
    result.spares = spares
    repairs: list[float] = []  # times at which repaired nodes rejoin the spare pool
    covered = sum(c.share * c.precursor for c in causes) / sum(c.share for c in causes)
    false_rate = case.failure_rate_per_s * covered * levers.false_drains_per_catch if levers.precursors else 0
    next_false = false_rng.expovariate(false_rate) if false_rate > 0 else math.inf
    t, since_ckpt, running_from, last_stop = 0.0, 0.0, 0.0, -math.inf
    drain = levers.precursor_policy == "drain"
    hybrid = levers.precursor_policy == "next_stop_or_drain"
    next_stop = levers.precursor_policy == "next_restart"
    wait_s = levers.precursor_drain_after_s if hybrid else 0.0
    stops: list[float] = []  # every time the job stopped, in order

    def stopped_within(start: float, end: float) -> bool:
        i = bisect.bisect_left(stops, start)
        return i < len(stops) and stops[i] <= end

    def stop(at: float, down: float, keep_work: bool) -> None:
        """The job trains until ``at``, then is down for ``down``; a crash loses the work since the
        last durable checkpoint (a write in flight too), a drain at the checkpoint boundary keeps it."""
        nonlocal since_ckpt, running_from, last_stop
        last_stop = at
        stops.append(at)
        since_ckpt = _train(result, since_ckpt, at - running_from, interval, write)
        lost = 0.0 if keep_work else min(since_ckpt, interval)
        result.productive_s -= lost
        result.lost_work_s += lost
        result.downtime_s += down
        since_ckpt, running_from = 0.0, at + down

    while True:
        t += rng.expovariate(case.failure_rate_per_s)
        cause = _pick(causes, rng)
        ticket = lognormal(rng, case.repair_median_s, 0.5)
        fixed_fast, warned, lead = (
            rng.random() < cause.reset_fixes,
            rng.random() < cause.precursor,
            (rng.expovariate(1 / levers.precursor_lead_mean_s)),
        )
        while next_false + wait_s < min(t, horizon):  # a healthy node the precursors flagged
            flagged, next_false = next_false, next_false + false_rng.expovariate(false_rate)
            at = flagged + wait_s
            while repairs and repairs[0] <= at:
                heapq.heappop(repairs)
                spares += 1
            # The agent's policy swaps it at a stop that came in time (only the spare is spent).
            free = hybrid and stopped_within(flagged, at)
            if spares == 0 or ((drain or (hybrid and not free)) and at < running_from):
                continue
            spares -= 1
            heapq.heappush(repairs, at + levers.false_drain_verify_s)
            result.false_drains += 1
            if drain or (hybrid and not free):
                swap = operator.respond("xid", True, True, respond_rng).recover_s
                stop(at, swap + case.restart_overhead_s, keep_work=True)
        if t >= horizon:
            break
        while repairs and repairs[0] <= t:
            heapq.heappop(repairs)
            spares += 1
        result.incidents += 1
        spare_ready = spares > 0
        if cause.persistent:
            if spare_ready:
                spares -= 1
            else:
                result.spare_shortfalls += 1
            repair = levers.fast_repair_s if levers.fast_repair and fixed_fast else ticket
            heapq.heappush(repairs, t + repair)
        if t < running_from:
            continue  # the job is already down for an earlier failure
        if levers.precursors and warned and spare_ready and next_stop and last_stop >= t - lead:
            # Swapped out at the job's last stop, after the warning: the crash never reaches the job.
            result.drains_avoided += 1
            continue
        if (
            levers.precursors
            and warned
            and spare_ready
            and hybrid
            and stopped_within(t - lead, min(t, t - lead + wait_s))
        ):
            # Swapped out at a stop that came within the wait: the crash never reaches the job.
            result.drains_avoided += 1
            continue
        if (
            levers.precursors
            and warned
            and spare_ready
            and (drain or hybrid)
            and lead >= wait_s + interval + write
        ):
            # Drained at the checkpoint boundary before the crash: no work lost, a planned swap.
            result.drains_avoided += 1
            response = operator.respond(cause.signal, cause.persistent, True, respond_rng)
            stop(t, response.recover_s + case.restart_overhead_s, keep_work=True)
            continue
        response = operator.respond(cause.signal, cause.persistent, spare_ready, respond_rng)
        wait = 0.0
        if response.waits_for_spare and cause.persistent:
            wait = max(0.0, heapq.heappop(repairs) - t)  # the first node back from repair is ours
            result.spare_wait_s += wait
        down = (
            response.detect_s
            + response.recover_s
            + wait
            + case.restart_overhead_s * (1 + response.failed_restarts)
        )
        stop(t, down, keep_work=False)
        result.interruptions += 1
        result.needed_person += response.needed_person
        result.escalated += response.escalated
        result.failed_restarts += response.failed_restarts
    if running_from < horizon:
        _train(result, since_ckpt, horizon - running_from, interval, write)
    return result
