"""Checkpoint write times, measured from the training job's own heartbeats.

A rank that finished writing a checkpoint says so on its next beat (``Heartbeat.checkpoint_step``
and ``checkpoint_write_s``: ``TrainingHeartbeat.checkpointed``; the twin's ranks do it too). The
detector service feeds every beat to a ``CheckpointTimeRecorder``, which keeps one sample per
checkpoint step (every rank of the gang reports the same checkpoint; the slowest rank's write is the
job's blocking write) and writes them, compare-and-set, to the ``checkpoint_times`` KV bucket under
the job's name: the last ``KEEP`` checkpoints per job, whoever of N detector replicas saw them.
``checkpoint_advice`` and ``describe_job`` read the median from there.
"""

from __future__ import annotations

import statistics
from datetime import datetime
from functools import partial

from pydantic import AwareDatetime, BaseModel, Field

from events import subjects
from events.documents import Documents
from events.models import Heartbeat

KEEP = 20


class CheckpointWrite(BaseModel):
    step: int = Field(ge=0)
    write_s: float = Field(gt=0)
    at: AwareDatetime


class CheckpointTimes(BaseModel):
    """The last checkpoint writes of one job, oldest first."""

    cluster: str
    job: str
    writes: list[CheckpointWrite] = Field(default_factory=list)

    @property
    def median_s(self) -> float | None:
        return statistics.median(w.write_s for w in self.writes) if self.writes else None

    def add(self, write: CheckpointWrite) -> None:
        """Record a write; the same step again keeps the longer write (the slowest rank blocks)."""
        for i, seen in enumerate(self.writes):
            if seen.step == write.step:
                if write.write_s > seen.write_s:
                    self.writes[i] = write
                return
        self.writes.append(write)
        self.writes.sort(key=lambda w: w.step)
        del self.writes[:-KEEP]


def key_of(job: str) -> str:
    return subjects.token(job)


class CheckpointTimeRecorder:
    """Collects checkpoint writes from beats (synchronously, on the beat path) and writes them to the
    bucket on ``flush`` (the detector service's evaluation round)."""

    def __init__(self, cluster: str, docs: Documents[CheckpointTimes]) -> None:
        self.cluster = cluster
        self.docs = docs
        self._pending: dict[tuple[str, int], CheckpointWrite] = {}
        self._flushed: dict[str, int] = {}  # job -> the newest step written
        self.recorded = 0

    def observe(self, beat: Heartbeat) -> None:
        if beat.checkpoint_step is None or beat.checkpoint_write_s is None:
            return
        if beat.checkpoint_step <= self._flushed.get(beat.job, -1) - KEEP:
            return  # older than anything kept
        key = (beat.job, beat.checkpoint_step)
        seen = self._pending.get(key)
        if seen is None or beat.checkpoint_write_s > seen.write_s:
            self._pending[key] = CheckpointWrite(
                step=beat.checkpoint_step, write_s=beat.checkpoint_write_s, at=beat.time
            )

    async def flush(self) -> int:
        """Write what was seen since the last flush; returns how many writes were recorded. A write
        that fails goes back to pending for the next round. Safe to call concurrently: each call
        takes what is pending at its start."""
        taken, self._pending = self._pending, {}
        written = 0
        try:
            for job in sorted({job for job, _ in taken}):
                writes = [w for (j, _), w in sorted(taken.items()) if j == job]

                def change(doc: CheckpointTimes, writes: list[CheckpointWrite] = writes) -> None:
                    for write in writes:
                        doc.add(write)

                await self.docs.update(
                    key_of(job), change, partial(CheckpointTimes, cluster=self.cluster, job=job)
                )
                for write in writes:
                    del taken[(job, write.step)]
                    self._flushed[job] = max(self._flushed.get(job, -1), write.step)
                written += len(writes)
        finally:
            for key, write in taken.items():  # not written: keep for the next round
                seen = self._pending.get(key)
                if seen is None or write.write_s > seen.write_s:
                    self._pending[key] = write
            self.recorded += written
        return written


def latest_write_s(times: CheckpointTimes | None) -> tuple[float, str] | None:
    """The job's measured write time and its basis, or None when no checkpoint was seen."""
    if times is None or not times.writes:
        return None
    median = times.median_s
    assert median is not None
    newest: datetime = times.writes[-1].at
    return median, (
        f"measured: median of the job's last {len(times.writes)} checkpoint writes from its heartbeats "
        f"(newest at step {times.writes[-1].step}, {newest.isoformat()})"
    )
