"""The per-rank heartbeat helper a training loop uses, and the relay that bundles beats, on a real
nats-server."""

from __future__ import annotations

import asyncio
import json
import math
from datetime import UTC, datetime

import pytest
from nats.aio.msg import Msg

from events.heartbeat import HeartbeatRelay, StepAverager, TrainingHeartbeat, decode_heartbeats, worse
from events.models import Heartbeat
from tests.waiting import eventually


async def collect(nc, subject: str) -> list[Msg]:
    got: list[Msg] = []

    async def on(msg: Msg) -> None:
        got.append(msg)

    await nc.subscribe(subject, cb=on)
    await nc.flush()
    return got


@pytest.mark.slow
async def test_a_training_loop_beats_once_per_step_without_blocking(nats_url, nc):
    got = await collect(nc, "gpu.heartbeat.sim-a.train-x")
    hb = TrainingHeartbeat(
        nats_url, cluster="sim-a", job="train-x", rank=3, node="node-001", gpu=3, min_interval_s=0
    )
    with hb:
        for step in range(1, 6):
            hb.beat(step, 0.5, compute_s=0.4, comm_s=0.1, collective_seq=step)
        await eventually(lambda: len(got) >= 5, within_s=10, what="five beats")
    [beat] = decode_heartbeats(got[-1].data)
    assert (beat.job, beat.rank, beat.node, beat.gpu, beat.step) == ("train-x", 3, "node-001", 3, 5)
    assert beat.step_time_s == 0.5 and beat.compute_s == 0.4 and beat.collective_seq == 5


@pytest.mark.slow
async def test_steps_are_averaged_between_publishes_and_a_stuck_loop_keeps_beating_its_last_step(
    nats_url, nc
):
    got = await collect(nc, "gpu.heartbeat.sim-a.>")
    hb = TrainingHeartbeat(
        nats_url, cluster="sim-a", job="j", rank=0, node="n", min_interval_s=3600, keepalive_s=0.05
    )
    with hb:
        for step, secs in enumerate([1.0, 2.0, 3.0], start=1):
            hb.beat(step, secs)  # only the first is due: the rest wait for the interval
        await eventually(lambda: len(got) >= 3, within_s=10, what="keep-alive repeats")
    beats = [decode_heartbeats(m.data)[0] for m in got]
    assert {b.step for b in beats} == {1}
    assert beats[0].compute_s is None  # no split given: none invented


def test_the_helper_reads_its_identity_from_the_launchers_environment(monkeypatch):
    monkeypatch.setenv("AIOPS_NATS_URL", "nats://10.0.0.1:4222")
    monkeypatch.setenv("AIOPS_CLUSTER", "prod-a")
    monkeypatch.setenv("JOB_NAME", "llm-70b")
    monkeypatch.setenv("RANK", "17")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("NODE_NAME", "gpu-node-7")
    hb = TrainingHeartbeat.from_env()
    assert hb.nats_url == "nats://10.0.0.1:4222"
    assert hb.identity == {"cluster": "prod-a", "job": "llm-70b", "rank": 17, "node": "gpu-node-7", "gpu": 1}


def test_an_unreachable_nats_is_a_readable_error_at_start():
    hb = TrainingHeartbeat("nats://127.0.0.1:1", cluster="c", job="j", rank=0, node="n")
    with pytest.raises(ConnectionError, match=r"cannot reach NATS at nats://127\.0\.0\.1:1"):
        hb.start()


async def test_the_relay_sends_one_bundle_per_job_of_the_beats_queued_together(nc):
    got = await collect(nc, "gpu.heartbeat.>")
    relay = HeartbeatRelay(nc)
    now = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
    for job in ("train-01", "train-02"):
        for rank in range(16):
            relay.offer(
                Heartbeat(cluster="sim-a", job=job, rank=rank, node="n", step=1, step_time_s=2.0, time=now)
            )
    stop = asyncio.Event()
    stop.set()  # publish what is queued, then return
    await relay.run(stop)
    await eventually(lambda: len(got) == 2, within_s=5, what="two bundles")
    assert sorted(m.subject for m in got) == ["gpu.heartbeat.sim-a.train-01", "gpu.heartbeat.sim-a.train-02"]
    assert all(len(json.loads(m.data)) == 16 for m in got) and relay.published == 32


def test_the_worst_loss_between_two_publishes_is_kept_not_averaged_away():
    assert worse(None, 2.0) == 2.0 and worse(2.0, None) == 2.0
    assert worse(2.0, 9.0) == 9.0 and worse(9.0, 2.0) == 9.0
    nan = float("nan")
    assert math.isnan(worse(2.0, nan)) and worse(nan, float("inf")) != float("inf")  # the first wins
    clock = [0.0]
    avg = StepAverager(10.0, monotonic=lambda: clock[0])
    avg.take()
    for secs, loss in [(1.0, 2.0), (1.0, 9.0), (1.0, 2.1)]:
        avg.add(secs, None, None, loss, 0.5)
    assert not avg.due() and avg.loss == 9.0 and avg.grad_norm == 0.5 and not avg.nonfinite()
    assert avg.take() == (1.0, None, None) and avg.loss is None  # taken: the next beat starts afresh


@pytest.mark.slow
async def test_a_first_nan_loss_is_sent_at_once_with_its_own_step_and_the_nan_after_it_is_not(nats_url, nc):
    got = await collect(nc, "gpu.heartbeat.sim-a.>")
    hb = TrainingHeartbeat(
        nats_url, cluster="sim-a", job="j", rank=0, node="n", min_interval_s=3600, keepalive_s=3600
    )
    nan = float("nan")
    with hb:
        hb.beat(1, 1.0, loss=2.0, grad_norm=1.0)  # due: the first beat
        hb.beat(2, 1.0, loss=9.0)  # held: the interval is an hour
        hb.beat(3, 1.0, loss=nan, grad_norm=1.0)  # the first NaN: at once
        hb.beat(4, 1.0, loss=nan)  # NaN again: held
        await eventually(lambda: len(got) >= 2, within_s=10, what="the first beat and the NaN one")
    beats = [decode_heartbeats(m.data)[0] for m in got]
    assert [b.step for b in beats] == [1, 3]
    assert beats[0].loss == 2.0 and beats[0].grad_norm == 1.0
    assert beats[1].loss is not None and math.isnan(beats[1].loss) and beats[1].grad_norm == 1.0
    assert b"NaN" in got[1].data  # the JSON constant on the wire
