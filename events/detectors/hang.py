"""The hang detector: training heartbeats in, hang events out — long before NCCL's 10-minute watchdog.

A job hangs when none of its ranks has made progress for longer than its threshold, while some of
them still beat (alive, stuck in a collective). The threshold comes from the job's own step time:
``multiple`` steps, at least a few heartbeat intervals and ``floor_s``, at most ``ceiling_s`` (half
the watchdog by default). A job whose ranks all went silent has ended or is restarting: no hang.

The ranks that stopped first are named, with their nodes:
- ranks that stopped beating while the others still wait (their process or GPU is gone);
- else ranks behind the others in the collective sequence (the others entered the next collective
  and wait for them, as the NCCL flight recorder shows);
- else every rank (they stopped together: no culprit can be told apart).

A job that progresses again after a reported hang gets a ``resumed`` event, which cancels it.
"""

from __future__ import annotations

import statistics
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime

from events.models import HangEvent, Heartbeat, stable_id

SOURCE = "hang-detector"
NCCL_WATCHDOG_S = 600.0


@dataclass
class _Rank:
    node: str
    gpu: int | None
    step: int
    seq: int
    last_beat: datetime
    last_progress: datetime


@dataclass
class _Job:
    cluster: str
    ranks: dict[int, _Rank] = field(default_factory=dict)
    step_times: deque[float] = field(default_factory=lambda: deque(maxlen=64))
    beat_gaps: deque[float] = field(default_factory=lambda: deque(maxlen=64))
    progress_at: datetime | None = None
    max_step: int = 0
    reported: tuple[int, ...] | None = None
    reported_step: int | None = None
    declared_s: float | None = None
    """The job's own threshold (``Heartbeat.hang_after_s``), when its ranks declare one."""


class HangDetector:
    def __init__(
        self,
        cluster: str,
        *,
        multiple: float = 20.0,
        floor_s: float = 30.0,
        ceiling_s: float = NCCL_WATCHDOG_S / 2,
        silent_after_beats: float = 3.0,
        forget_after_s: float = 3600.0,
        max_jobs: int = 10_000,
    ) -> None:
        self.cluster = cluster
        self.multiple = multiple
        self.floor_s = floor_s
        self.ceiling_s = ceiling_s
        self.silent_after_beats = silent_after_beats
        self.forget_after_s = forget_after_s
        self.max_jobs = max_jobs
        self._jobs: OrderedDict[str, _Job] = OrderedDict()
        self.beats = 0

    @property
    def jobs(self) -> list[str]:
        return list(self._jobs)

    def observe(self, beat: Heartbeat) -> None:
        self.beats += 1
        job = self._jobs.get(beat.job)
        if job is None:
            job = self._jobs[beat.job] = _Job(beat.cluster)
            while len(self._jobs) > self.max_jobs:
                self._jobs.popitem(last=False)
        else:
            self._jobs.move_to_end(beat.job)
        if beat.hang_after_s is not None:
            job.declared_s = beat.hang_after_s
        seq = beat.collective_seq if beat.collective_seq is not None else beat.step
        rank = job.ranks.get(beat.rank)
        if rank is not None and beat.step < rank.step:
            # Steps went back: the job restarted from a checkpoint. Start over (keep the step times).
            job.ranks.clear()
            job.max_step, job.progress_at, job.reported, job.reported_step = 0, None, None, None
            rank = None
        if rank is None:
            job.ranks[beat.rank] = _Rank(beat.node, beat.gpu, beat.step, seq, beat.time, beat.time)
            job.progress_at = max(job.progress_at or beat.time, beat.time)
        else:
            gap = (beat.time - rank.last_beat).total_seconds()
            if 0 < gap <= self.ceiling_s / self.silent_after_beats:
                # The cadence; a longer gap is a reconnect (or the twin's clock jumping), not a rhythm.
                job.beat_gaps.append(gap)
            if beat.step > rank.step:
                rank.last_progress = beat.time
                job.progress_at = max(job.progress_at or beat.time, beat.time)
                if beat.step_time_s > 0:
                    job.step_times.append(beat.step_time_s)
            rank.node, rank.gpu, rank.step, rank.seq = beat.node, beat.gpu, beat.step, seq
            rank.last_beat = max(rank.last_beat, beat.time)
        job.max_step = max(job.max_step, beat.step)

    def threshold_s(self, job_name: str) -> float:
        """How long ``job_name`` may go without progress before it counts as hung."""
        job = self._jobs.get(job_name)
        if job is not None and job.declared_s is not None:
            return min(job.declared_s, self.ceiling_s)  # the job knows its own rhythm best
        step = statistics.median(job.step_times) if job and job.step_times else 0.0
        gap = statistics.median(job.beat_gaps) if job and job.beat_gaps else 0.0
        low = max(self.floor_s, self.silent_after_beats * gap)
        return min(max(self.multiple * step, low), self.ceiling_s)

    def _silent_after_s(self, job: _Job) -> float:
        gap = statistics.median(job.beat_gaps) if job.beat_gaps else self.floor_s / self.silent_after_beats
        return self.silent_after_beats * gap

    def evaluate(self, now: datetime) -> list[HangEvent]:
        """Hang (and resumed) events due at ``now``."""
        out: list[HangEvent] = []
        for name, job in list(self._jobs.items()):
            if not job.ranks or job.progress_at is None:
                continue
            stalled_for = (now - job.progress_at).total_seconds()
            silent_after = self._silent_after_s(job)
            alive = {
                r: s for r, s in job.ranks.items() if (now - s.last_beat).total_seconds() <= silent_after
            }
            if not alive:
                if stalled_for > self.forget_after_s:
                    del self._jobs[name]
                continue  # every process is gone: the job ended or is restarting, not hung
            threshold = self.threshold_s(name)
            if stalled_for <= threshold:
                if job.reported is not None and job.max_step > (job.reported_step or 0):
                    out.append(self._resumed(name, job, now, threshold))
                    job.reported, job.reported_step = None, None
                continue
            first, how = self._first_stalled(job, alive)
            if job.reported == tuple(first):
                continue
            job.reported, job.reported_step = tuple(first), job.max_step
            out.append(self._hang(name, job, first, how, now, stalled_for, threshold))
        return out

    @staticmethod
    def _first_stalled(job: _Job, alive: dict[int, _Rank]) -> tuple[list[int], str]:
        silent = sorted(r for r in job.ranks if r not in alive)
        if silent:
            return silent, "stopped beating (process or GPU gone) while the other ranks wait"
        lowest = min((s.step, s.seq) for s in job.ranks.values())
        behind = sorted(r for r, s in job.ranks.items() if (s.step, s.seq) == lowest)
        if len(behind) < len(job.ranks):
            return behind, "behind the other ranks in the collective sequence: the others wait for them"
        return sorted(job.ranks), "every rank stopped at the same point: no first-stalled rank stands out"

    def _hang(
        self,
        name: str,
        job: _Job,
        first: list[int],
        how: str,
        now: datetime,
        stalled_for: float,
        threshold: float,
    ) -> HangEvent:
        ranks = [job.ranks[r] for r in first]
        nodes = list(dict.fromkeys(r.node for r in ranks))
        return HangEvent(
            event_id=stable_id(job.cluster, name, "hang", job.max_step, *first),
            time=now,
            cluster=job.cluster,
            source=SOURCE,
            node=nodes[0] if len(nodes) == 1 else None,
            job=name,
            ranks=first,
            nodes=nodes,
            gpus=[f"{r.node}/{r.gpu}" for r in ranks if r.gpu is not None],
            last_step=job.max_step,
            stalled_for_s=round(stalled_for, 3),
            threshold_s=round(threshold, 3),
            ranks_total=len(job.ranks),
            how=how,
        )

    def _resumed(self, name: str, job: _Job, now: datetime, threshold: float) -> HangEvent:
        return HangEvent(
            event_id=stable_id(job.cluster, name, "resumed", job.max_step),
            time=now,
            cluster=job.cluster,
            source=SOURCE,
            job=name,
            last_step=job.max_step,
            stalled_for_s=0.0,
            threshold_s=round(threshold, 3),
            ranks_total=len(job.ranks),
            how="progress resumed",
            resumed=True,
        )
