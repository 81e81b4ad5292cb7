"""Checkpoint write times measured from heartbeats: a training loop reports a finished checkpoint on
its next beat, the twin's ranks do too, and the detectors keep one sample per checkpoint per job in
the ``checkpoint_times`` KV bucket, whichever replica saw which rank."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from events import subjects
from events.checkpoint_times import KEEP, CheckpointTimeRecorder, CheckpointTimes, key_of, latest_write_s
from events.detectors import DetectorService
from events.documents import KvDocuments, MemoryDocuments
from events.heartbeat import HeartbeatRelay, TrainingHeartbeat, decode_heartbeats
from events.models import Heartbeat
from fleet import FleetSpec, FleetTwin
from tests.events.test_heartbeat import collect
from tests.waiting import eventually

T0 = datetime(2026, 12, 7, tzinfo=UTC)


def beat(rank: int, step: int | None, write_s: float | None, job: str = "train-01") -> Heartbeat:
    return Heartbeat(
        cluster="sim-a",
        job=job,
        rank=rank,
        node=f"node-{rank // 8:03d}",
        step=100,
        step_time_s=1.0,
        time=T0 + timedelta(minutes=step or 0),
        checkpoint_step=step,
        checkpoint_write_s=write_s,
    )


async def test_every_rank_of_one_checkpoint_is_one_sample_the_slowest_rank_s_write() -> None:
    docs = MemoryDocuments(CheckpointTimes)
    recorder = CheckpointTimeRecorder("sim-a", docs)
    for rank, write in enumerate([11.0, 12.5, 11.2]):
        recorder.observe(beat(rank, 500, write))
    recorder.observe(beat(0, None, None))  # an ordinary beat says nothing about checkpoints
    assert await recorder.flush() == 1
    recorder.observe(beat(1, 500, 9.0))  # a late, faster rank of the same checkpoint
    recorder.observe(beat(0, 1000, 14.0))
    await recorder.flush()
    times = await docs.get(key_of("train-01"))
    assert times is not None
    assert [(w.step, w.write_s) for w in times.writes] == [(500, 12.5), (1000, 14.0)]
    measured = latest_write_s(times)
    assert measured is not None and measured[0] == pytest.approx(13.25)
    assert measured[1].startswith("measured: median of the job's last 2 checkpoint writes")
    assert latest_write_s(None) is None


async def test_only_the_last_checkpoints_are_kept() -> None:
    docs = MemoryDocuments(CheckpointTimes)
    recorder = CheckpointTimeRecorder("sim-a", docs)
    for step in range(KEEP + 5):
        recorder.observe(beat(0, step, 10.0 + step))
    await recorder.flush()
    times = await docs.get(key_of("train-01"))
    assert times is not None and [w.step for w in times.writes] == list(range(5, KEEP + 5))


@pytest.mark.slow
async def test_two_detector_replicas_seeing_different_ranks_keep_one_sample_per_checkpoint(js) -> None:
    kv = await js.key_value(subjects.BUCKET_CHECKPOINT_TIMES)
    a = CheckpointTimeRecorder("sim-a", KvDocuments(kv, CheckpointTimes))
    b = CheckpointTimeRecorder("sim-a", KvDocuments(kv, CheckpointTimes))
    for step in (500, 1000, 1500):
        a.observe(beat(0, step, 10.0))
        b.observe(beat(9, step, 10.0 + step / 500))
    await asyncio.gather(a.flush(), b.flush())
    times = await KvDocuments(kv, CheckpointTimes).get(key_of("train-01"))
    assert times is not None
    assert [(w.step, w.write_s) for w in times.writes] == [(500, 11.0), (1000, 12.0), (1500, 13.0)]


@pytest.mark.slow
async def test_a_training_loop_reports_its_checkpoint_write_on_the_next_beat_once(nats_url, nc) -> None:
    got = await collect(nc, "gpu.heartbeat.sim-a.train-x")
    hb = TrainingHeartbeat(
        nats_url, cluster="sim-a", job="train-x", rank=0, node="n", min_interval_s=3600, keepalive_s=0.05
    )
    with hb:
        hb.beat(1, 0.5)  # due: the first beat
        hb.checkpointed(1, 7.5)
        hb.beat(2, 0.5)  # not due by the interval, but it carries the checkpoint: sent at once
        await eventually(lambda: len(got) >= 4, within_s=10, what="the beats and keep-alives")
    beats = [decode_heartbeats(m.data)[0] for m in got]
    assert [(b.step, b.checkpoint_step, b.checkpoint_write_s) for b in beats[:2]] == [
        (1, None, None),
        (2, 1, 7.5),
    ]
    assert all(b.checkpoint_step is None for b in beats[2:])  # keep-alives do not repeat it
    with pytest.raises(ValueError, match="write_s"):
        hb.checkpointed(3, 0)


@pytest.mark.slow
async def test_the_twin_s_checkpoints_reach_the_bucket_through_the_detectors(nc, js) -> None:
    twin = FleetTwin(FleetSpec.small(seed=7))
    docs = KvDocuments(await js.key_value(subjects.BUCKET_CHECKPOINT_TIMES), CheckpointTimes)
    service = DetectorService(
        nc, js, cluster="sim-a", clock=twin.now, checkpoints=CheckpointTimeRecorder("sim-a", docs)
    )
    await service.start()
    relay, stop = HeartbeatRelay(nc), asyncio.Event()
    twin.subscribe_heartbeats(
        lambda b: relay.offer(Heartbeat.model_validate({**dataclasses.asdict(b), "cluster": "sim-a"}))
    )
    publisher = asyncio.create_task(relay.run(stop))
    try:
        for _ in range(2 * 65):  # a little over two checkpoint cycles of train-01 (1800 s + 30 s)
            twin.advance(30)
        await eventually(lambda: service.beats_seen == relay.published > 0, within_s=10, what="beats")
        await service.evaluate()
        times = await docs.get(key_of("train-01"))
        assert times is not None and len(times.writes) >= 2
        assert {w.write_s for w in times.writes} == {twin.job("train-01").checkpoint_write_s}
    finally:
        stop.set()
        await publisher
        await service.stop()


async def test_concurrent_flushes_write_each_checkpoint_once_and_a_failed_write_is_kept() -> None:
    docs = MemoryDocuments(CheckpointTimes)
    recorder = CheckpointTimeRecorder("sim-a", docs)
    for step in (100, 200):
        recorder.observe(beat(0, step, 10.0))
    assert sum(await asyncio.gather(recorder.flush(), recorder.flush())) == 2

    class Down(MemoryDocuments[CheckpointTimes]):
        async def read(self, key: str) -> None:  # type: ignore[override]
            raise ConnectionError("NATS is down")

    failing = CheckpointTimeRecorder("sim-a", Down(CheckpointTimes))
    failing.observe(beat(0, 300, 12.0))
    with pytest.raises(ConnectionError):
        await failing.flush()
    failing.docs = docs
    assert await failing.flush() == 1
    times = await docs.get(key_of("train-01"))
    assert times is not None and [w.step for w in times.writes] == [100, 200, 300]
