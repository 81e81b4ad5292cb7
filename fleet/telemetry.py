"""What the fleet's GPUs and training ranks report besides kernel lines: DCGM counters and heartbeats.

Per GPU: ECC counters (volatile ones clear on a GPU reset or reboot, aggregate ones never), retired
pages, row remaps, clock event reasons, temperature, power, and the Xids of the last few minutes.
Per training rank: one progress beat every ``heartbeat_interval_s`` with its step, step time, the
split of that time into its own compute and collectives (waiting included), and how many collectives
it has entered.

Step-time model of a synchronous data-parallel job: every rank computes, then all meet in the
collective, so a step takes ``max(rank compute) + collective``. A throttled GPU stretches its rank's
compute (the others wait for it inside the collective); a degraded leaf switch stretches the
collective of every job with a node under it.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from events import dcgm_fields
from fleet.jobs import TrainingJob
from fleet.numerics import JobNumerics
from fleet.topology import Cluster

# DCGM_FI_DEV_CLOCKS_EVENT_REASONS bits (events.dcgm_fields, after NVML's nvmlClocksEventReasons).
CLOCK_HW_SLOWDOWN = dcgm_fields.CLOCKS_HW_SLOWDOWN
CLOCK_SW_THERMAL = dcgm_fields.CLOCKS_SW_THERMAL
CLOCK_HW_THERMAL = dcgm_fields.CLOCKS_HW_THERMAL
CLOCK_POWER_BRAKE = dcgm_fields.CLOCKS_HW_POWER_BRAKE

XID_COUNT_WINDOW_S = 300.0
"""dcgm-exporter's DCGM_EXP_XID_ERRORS_COUNT window (5 minutes by default)."""
DEFAULT_HEARTBEAT_INTERVAL_S = 10.0
COMPUTE_SHARE = 0.7
"""Share of a healthy step spent in the rank's own compute; the rest is the gradient all-reduce."""
BEAT_NOISE = 0.01

EccInjection = Literal["dbe", "sbe_burst", "remap_pending", "remap_failure", "retired_pages"]


@dataclass
class GpuCounters:
    """One GPU's DCGM fields, as dcgm-exporter would export them."""

    sbe_volatile: int = 0
    dbe_volatile: int = 0
    sbe_aggregate: int = 0
    dbe_aggregate: int = 0
    retired_sbe: int = 0
    retired_dbe: int = 0
    retired_pending: int = 0
    remap_correctable: int = 0
    remap_uncorrectable: int = 0
    remap_pending: int = 0
    remap_failure: int = 0
    clock_event_reasons: int = 0
    throttle: float = 1.0
    """Compute slowdown of this GPU (1 = full clocks)."""
    gpu_temp_c: float = 40.0
    memory_temp_c: float = 45.0
    power_w: float = 120.0
    last_xid: int = 0
    xids: deque[tuple[datetime, int]] = field(default_factory=lambda: deque(maxlen=4096))

    def reset(self) -> None:
        """A GPU reset: volatile counters clear, a pending row remap takes effect, clocks recover."""
        self.sbe_volatile = self.dbe_volatile = 0
        self.remap_pending = 0
        self.retired_pending = 0
        self.clock_event_reasons = 0
        self.throttle = 1.0

    def xid_counts(self, now: datetime, window_s: float = XID_COUNT_WINDOW_S) -> dict[int, int]:
        """Xid occurrences in the last ``window_s`` seconds, by code."""
        since = now - timedelta(seconds=window_s)
        while self.xids and self.xids[0][0] < since:
            self.xids.popleft()
        counts: dict[int, int] = {}
        for _, code in self.xids:
            counts[code] = counts.get(code, 0) + 1
        return counts


@dataclass(frozen=True, slots=True)
class RankBeat:
    """A training rank's progress report (the platform publishes it as a ``Heartbeat``)."""

    job: str
    rank: int
    node: str
    gpu: int
    step: int
    step_time_s: float
    compute_s: float
    comm_s: float
    collective_seq: int
    time: datetime
    checkpoint_step: int | None = None  # the checkpoint finished since the job's previous beats
    checkpoint_write_s: float | None = None  # and how long its write blocked the rank
    loss: float | None = None  # the job's loss at ``step`` (NaN when corrupted: fleet.numerics)
    grad_norm: float | None = None  # this rank's gradient norm before the all-reduce


BeatCallback = Callable[[RankBeat], None]


@dataclass
class _Stall:
    """Why a job stopped: a hung rank (alive, stuck) or ranks whose process died with a GPU fault."""

    hung_rank: int | None = None
    dead_ranks: set[int] = field(default_factory=set)


class FleetTelemetry:
    """Counters and beats of the whole fleet; the twin calls its hooks when faults and actions happen."""

    def __init__(
        self,
        cluster: Cluster,
        rng: random.Random,
        *,
        base_step_s: dict[str, float],
        heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S,
    ) -> None:
        if heartbeat_interval_s <= 0:
            raise ValueError(f"heartbeat_interval_s must be positive, got {heartbeat_interval_s}")
        self.cluster = cluster
        self.heartbeat_interval_s = heartbeat_interval_s
        self._rng = rng
        self._base_step = dict(base_step_s)
        self.gpus: dict[tuple[str, int], GpuCounters] = {}
        for node in cluster.nodes.values():
            for gpu in node.gpus:
                counters = GpuCounters(gpu_temp_c=rng.uniform(34, 40), memory_temp_c=rng.uniform(38, 44))
                # Most GPUs have a clean history; a few carry old corrected errors (aggregate counters).
                if rng.random() < 0.05:
                    counters.sbe_aggregate = rng.randrange(1, 40)
                    counters.remap_correctable = rng.randrange(0, 3)
                self.gpus[(node.name, gpu.index)] = counters
        self.link_factor: dict[str, float] = {}
        self.workload_factor: dict[str, float] = {}
        self._stalls: dict[str, _Stall] = {}
        self._last_beat: dict[str, datetime] = {}
        self._checkpoint_told: dict[str, int] = {}  # job -> the checkpoint step its beats reported
        self._subscribers: list[BeatCallback] = []
        self.numerics = JobNumerics()

    # -- faults -------------------------------------------------------------------------------------

    def counters(self, node: str, gpu: int) -> GpuCounters:
        return self.gpus[(node, gpu)]

    def record_xid(self, node: str, gpu: int, xid: int, at: datetime) -> None:
        counters = self.gpus[(node, gpu)]
        counters.last_xid = xid
        counters.xids.append((at, xid))

    def inject_ecc(self, node: str, gpu: int, kind: EccInjection, count: int = 1) -> None:
        c = self.gpus[(node, gpu)]
        if kind == "dbe":
            c.dbe_volatile += count
            c.dbe_aggregate += count
            # H100 remaps the row of an uncorrectable error; it takes effect at the next reset.
            c.remap_uncorrectable += count
            c.remap_pending = 1
        elif kind == "sbe_burst":
            c.sbe_volatile += count
            c.sbe_aggregate += count
        elif kind == "remap_pending":
            c.remap_correctable += count
            c.remap_pending = 1
        elif kind == "remap_failure":
            c.remap_failure = 1
        else:  # retired_pages: pre-Ampere page retirement, still exported by DCGM
            c.retired_sbe += count
            c.retired_pending = 1

    def throttle(self, node: str, gpu: int, factor: float) -> None:
        """Thermal throttling: clocks drop, the rank on this GPU computes ``factor`` times slower."""
        c = self.gpus[(node, gpu)]
        c.throttle = max(1.0, factor)
        c.clock_event_reasons = (CLOCK_SW_THERMAL | CLOCK_HW_THERMAL) if factor > 1 else 0
        c.gpu_temp_c = 91.0 if factor > 1 else 38.0

    def degrade_link(self, leaf: str, factor: float) -> None:
        """Collectives of every job with a node under ``leaf`` take ``factor`` times longer (1 restores)."""
        if factor <= 1.0:
            self.link_factor.pop(leaf, None)
        else:
            self.link_factor[leaf] = factor

    def slow_workload(self, job: str, factor: float) -> None:
        """The job's own work got slower (input pipeline, a bigger batch, new code): every rank
        computes ``factor`` times longer, the collectives and the hardware stay as they were."""
        if factor <= 1.0:
            self.workload_factor.pop(job, None)
        else:
            self.workload_factor[job] = factor

    def pick_rank(self, ranks: int) -> int:
        return self._rng.randrange(ranks)

    def hang(self, job: str, rank: int) -> None:
        self._stalls[job] = _Stall(hung_rank=rank)

    def process_died(self, job: TrainingJob, node: str, gpu: int) -> None:
        """The rank on ``node``/``gpu`` died with its GPU; the others block in the next collective."""
        if job.uses(node, gpu):
            rank = job.rank_of(node, gpu)
            self._stalls.setdefault(job.name, _Stall()).dead_ranks.add(rank)

    def stopped(self, job: TrainingJob) -> None:
        """Every rank of ``job`` exited (it was stopped): no more beats until it restarts."""
        self._stalls[job.name] = _Stall(dead_ranks=set(range(job.gpus)))

    def gpu_reset(self, node: str, gpu: int) -> None:
        """Call when a GPU is reset (drivers clear the volatile counters then)."""
        self.gpus[(node, gpu)].reset()

    def node_rebooted(self, node: str) -> None:
        """Call when a node reboots: every GPU on it resets, and the driver and dcgm-exporter start
        afresh: the last-Xid gauge reads 0 and the windowed Xid count is empty (an Xid from before
        the reboot is not seen again as a new one)."""
        for (name, _), counters in self.gpus.items():
            if name == node:
                counters.reset()
                counters.last_xid = 0
                counters.xids.clear()

    # -- the step-time model ------------------------------------------------------------------------

    def base_step_s(self, job: TrainingJob) -> float:
        return self._base_step.setdefault(job.name, job.step_time_s)

    def step_profile(self, job: TrainingJob) -> tuple[float, list[float], float]:
        """(step time, compute time per rank, collective time) of ``job`` on its current gang."""
        base = self.base_step_s(job)
        own = self.workload_factor.get(job.name, 1.0)
        compute = [
            base * COMPUTE_SHARE * own * self.gpus[(node, g)].throttle
            for node in job.nodes
            for g in job.gpu_indices
        ]
        leaves = {self.cluster.nodes[n].leaf for n in job.nodes if n in self.cluster.nodes}
        factor = max((self.link_factor.get(leaf, 1.0) for leaf in leaves), default=1.0)
        collective = base * (1 - COMPUTE_SHARE) * factor
        return max(compute, default=0.0) + collective, compute, collective

    # -- time ---------------------------------------------------------------------------------------

    def before_advance(self, jobs: Iterable[TrainingJob]) -> None:
        """Slow jobs train slower: set each job's step time from the model before it advances."""
        for job in jobs:
            if job.active:
                job.step_time_s = self.step_profile(job)[0]

    def after_advance(self, now: datetime, jobs: Iterable[TrainingJob]) -> None:
        """Forget stalls of jobs that restarted; emit due heartbeats."""
        for job in jobs:
            if job.state in ("restarting", "pending", "completed", "failed"):
                self._stalls.pop(job.name, None)
                self._last_beat.pop(job.name, None)
            elif job.state == "running":
                self._stalls.pop(job.name, None)
            busy = job.state == "running"
            for node in job.nodes:
                for g in job.gpu_indices:
                    c = self.gpus[(node, g)]
                    # A training GPU draws ~600 W of its 700 W TDP; a stuck one idles in the collective.
                    c.power_w = 610.0 / c.throttle if busy else 150.0
                    if c.throttle == 1.0:
                        c.gpu_temp_c = 62.0 if busy else 40.0
            if not self._subscribers or job.state not in ("running", "stalled"):
                continue
            last = self._last_beat.get(job.name)
            if last is not None and (now - last).total_seconds() < self.heartbeat_interval_s:
                continue
            self._last_beat[job.name] = now
            for beat in self._beats(job, now):
                for callback in list(self._subscribers):
                    callback(beat)

    def _beats(self, job: TrainingJob, now: datetime) -> list[RankBeat]:
        step_s, compute, _ = self.step_profile(job)
        stall = self._stalls.get(job.name) if job.state == "stalled" else None
        beats = []
        done = job.last_checkpoint_step if job.last_checkpoint_at is not None else None
        if done is not None and job.checkpoint_write_s > 0 and self._checkpoint_told.get(job.name) != done:
            self._checkpoint_told[job.name] = done
        else:
            done = None
        loss = self.numerics.loss(job)
        for rank, rank_compute in enumerate(compute):
            if stall is not None and rank in stall.dead_ranks:
                continue  # the process is gone: no more beats
            seq = job.step
            if stall is not None and rank != stall.hung_rank:
                seq += 1  # entered the next collective and waits there for the stalled rank
            noise = 1 + self._rng.uniform(-BEAT_NOISE, BEAT_NOISE)
            node, gpu = job.place_of(rank)
            beats.append(
                RankBeat(
                    job=job.name,
                    rank=rank,
                    node=node,
                    gpu=gpu,
                    step=job.step,
                    step_time_s=step_s * noise,
                    compute_s=rank_compute * noise,
                    comm_s=max(0.0, step_s - rank_compute) * noise,
                    collective_seq=seq,
                    time=now,
                    checkpoint_step=done,
                    checkpoint_write_s=job.checkpoint_write_s if done is not None else None,
                    loss=loss,
                    grad_norm=self.numerics.grad_norm(job, rank, node, gpu),
                )
            )
        return beats

    def subscribe(self, callback: BeatCallback) -> Callable[[], None]:
        """Call ``callback(beat)`` for every future heartbeat; returns the unsubscriber."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe
