"""The throughput detector: per-rank step timings in, slowdown events out.

Each job gets a robust baseline: the median step time of its first healthy samples, then a slow
moving average of samples near it (a slow period never drags the baseline along). A job is slow
when its median step time stays more than ``threshold`` above the baseline for ``sustained_s``.

Attribution, from the per-rank split of a step into the rank's own compute and its collectives:
- straggler: some ranks compute slower than the rest (a throttled GPU, a slow host); the others
  wait for them, so those ranks and their nodes are the suspects;
- network: some ranks' collectives are slower than the rest, or every rank's collectives are
  slower than at baseline while compute is unchanged: the suspects are the leaf switches the slow
  ranks share (all the job's leaves when every rank is slow; the agent intersects jobs);
- workload: uniformly slower with neither — usually the job's own doing, which evicting nodes
  does not fix (ByteDance straggler study, failure-rates.md).
When the job is back at baseline for ``sustained_s``, a ``recovered`` event cancels the slowdown.
"""

from __future__ import annotations

import statistics
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from events.fabric import FabricMap
from events.models import Heartbeat, ThroughputEvent, stable_id

SOURCE = "throughput-detector"
Signature = Literal["straggler", "network", "workload"]


@dataclass
class _RankPerf:
    node: str
    gpu: int | None
    step: int
    step_time_s: float
    compute_s: float | None
    comm_s: float | None
    time: datetime


@dataclass
class _Job:
    cluster: str
    ranks: dict[int, _RankPerf] = field(default_factory=dict)
    fresh: bool = False
    warmup: list[tuple[float, float | None]] = field(default_factory=list)
    baseline: float | None = None
    baseline_comm: float | None = None
    slow_since: datetime | None = None
    fast_since: datetime | None = None
    reported: ThroughputEvent | None = None


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


class ThroughputDetector:
    def __init__(
        self,
        cluster: str,
        *,
        fabric: FabricMap | None = None,
        threshold: float = 0.15,
        outlier: float = 0.15,
        sustained_s: float = 120.0,
        warmup_samples: int = 5,
        stale_after_s: float = 120.0,
        max_jobs: int = 10_000,
    ) -> None:
        self.cluster = cluster
        self.fabric = fabric or FabricMap()
        self.threshold = threshold
        self.outlier = outlier
        self.sustained_s = sustained_s
        self.warmup_samples = warmup_samples
        self.stale_after_s = stale_after_s
        self.max_jobs = max_jobs
        self._jobs: OrderedDict[str, _Job] = OrderedDict()

    def baseline(self, job: str) -> float | None:
        """The job's baseline step time, once learned."""
        state = self._jobs.get(job)
        return state.baseline if state else None

    def observe(self, beat: Heartbeat) -> None:
        job = self._jobs.get(beat.job)
        if job is None:
            job = self._jobs[beat.job] = _Job(beat.cluster)
            while len(self._jobs) > self.max_jobs:
                self._jobs.popitem(last=False)
        else:
            self._jobs.move_to_end(beat.job)
        prev = job.ranks.get(beat.rank)
        if prev is not None and beat.step <= prev.step:
            if beat.step < prev.step:
                job.ranks.clear()  # restarted from a checkpoint: a new gang, maybe new nodes
            return  # a keep-alive repeat or a stalled rank: no new timing
        if beat.step_time_s <= 0:
            return
        job.ranks[beat.rank] = _RankPerf(
            beat.node, beat.gpu, beat.step, beat.step_time_s, beat.compute_s, beat.comm_s, beat.time
        )
        job.fresh = True

    def evaluate(self, now: datetime) -> list[ThroughputEvent]:
        out: list[ThroughputEvent] = []
        for name, job in self._jobs.items():
            if not job.fresh:
                continue
            job.fresh = False
            ranks = {
                r: p for r, p in job.ranks.items() if (now - p.time).total_seconds() <= self.stale_after_s
            }
            if not ranks:
                continue
            observed = _median([p.step_time_s for p in ranks.values()])
            comms = [p.comm_s for p in ranks.values() if p.comm_s is not None]
            comm = _median(comms) if len(comms) == len(ranks) else None
            if job.baseline is None:
                job.warmup.append((observed, comm))
                if len(job.warmup) >= self.warmup_samples:
                    job.baseline = _median([w[0] for w in job.warmup])
                    comm_samples = [w[1] for w in job.warmup if w[1] is not None]
                    job.baseline_comm = _median(comm_samples) if comm_samples else None
                continue
            event = self._step(name, job, ranks, observed, comm, now)
            if event is not None:
                out.append(event)
        return out

    def _step(
        self,
        name: str,
        job: _Job,
        ranks: dict[int, _RankPerf],
        observed: float,
        comm: float | None,
        now: datetime,
    ) -> ThroughputEvent | None:
        assert job.baseline is not None
        slow = observed > job.baseline * (1 + self.threshold)
        if slow:
            job.fast_since = None
            job.slow_since = job.slow_since or now
            sustained = (now - job.slow_since).total_seconds()
            if job.reported is None and sustained >= self.sustained_s:
                job.reported = self._slowdown(name, job, ranks, observed, comm, sustained, now)
                return job.reported
            return None
        job.slow_since = None
        if job.reported is None:
            # Healthy: let the baseline follow slow drifts (new data, a bigger batch) but not spikes.
            job.baseline = 0.9 * job.baseline + 0.1 * observed
            if comm is not None and job.baseline_comm is not None:
                job.baseline_comm = 0.9 * job.baseline_comm + 0.1 * comm
            return None
        job.fast_since = job.fast_since or now
        if (now - job.fast_since).total_seconds() < self.sustained_s:
            return None
        slowed, job.reported, job.fast_since = job.reported, None, None
        return ThroughputEvent(
            event_id=stable_id(job.cluster, name, "recovered", slowed.event_id),
            time=now,
            cluster=job.cluster,
            source=SOURCE,
            job=name,
            baseline_step_s=job.baseline,
            observed_step_s=observed,
            slowdown=round(observed / job.baseline, 4),
            nodes=slowed.nodes,
            signature=slowed.signature,
            recovered=True,
        )

    def _attribute(
        self, ranks: dict[int, _RankPerf], comm: float | None, baseline_comm: float | None
    ) -> tuple[Signature, list[int], list[str]]:
        """(signature, suspect ranks, suspect switches)."""
        computes = {r: p.compute_s for r, p in ranks.items() if p.compute_s is not None}
        if len(computes) == len(ranks) and len(ranks) > 1:
            med = _median(list(computes.values()))
            slow = sorted(r for r, c in computes.items() if c > med * (1 + self.outlier))
            if slow and len(slow) <= len(ranks) // 2:
                return "straggler", slow, []
        comms = {r: p.comm_s for r, p in ranks.items() if p.comm_s is not None}
        if len(comms) == len(ranks) and len(ranks) > 1:
            med = _median(list(comms.values()))
            slow = sorted(r for r, c in comms.items() if c > med * (1 + self.outlier))
            if slow and len(slow) <= len(ranks) // 2:
                return "network", slow, self.fabric.leaves_of(ranks[r].node for r in slow)
        if comm is not None and baseline_comm and comm > baseline_comm * (1 + self.threshold):
            return "network", [], self.fabric.leaves_of(p.node for p in ranks.values())
        return "workload", [], []

    def _slowdown(
        self,
        name: str,
        job: _Job,
        ranks: dict[int, _RankPerf],
        observed: float,
        comm: float | None,
        sustained: float,
        now: datetime,
    ) -> ThroughputEvent:
        assert job.baseline is not None and job.slow_since is not None
        signature, suspects, switches = self._attribute(ranks, comm, job.baseline_comm)
        nodes = list(dict.fromkeys(p.node for _, p in sorted(ranks.items())))
        suspect_nodes = list(dict.fromkeys(ranks[r].node for r in suspects))
        return ThroughputEvent(
            event_id=stable_id(job.cluster, name, "slow", job.slow_since.isoformat()),
            time=now,
            cluster=job.cluster,
            source=SOURCE,
            node=suspect_nodes[0] if len(suspect_nodes) == 1 else None,
            job=name,
            baseline_step_s=round(job.baseline, 6),
            observed_step_s=round(observed, 6),
            slowdown=round(observed / job.baseline, 4),
            suspect_nodes=suspect_nodes,
            suspect_ranks=suspects,
            suspect_switches=switches,
            suspect_gpus=[f"{ranks[r].node}/{ranks[r].gpu}" for r in suspects if ranks[r].gpu is not None],
            signature=signature,
            nodes=nodes,
            sustained_s=round(sustained, 3),
        )
