"""The hang detector on the fleet twin's heartbeats (and on hand-made ones for the edge cases)."""

from __future__ import annotations

from datetime import timedelta

from events.detectors import HangDetector
from events.detectors.hang import NCCL_WATCHDOG_S
from events.models import HangEvent, Heartbeat
from tests.agents.factories import T0


def hangs(events: list) -> list[HangEvent]:
    return [e for e in events if isinstance(e, HangEvent)]


def test_a_healthy_fleet_never_hangs(watched):
    assert hangs(watched.run(600)) == []
    assert set(watched.hang.jobs) == {"train-01", "train-02"}


def test_a_hung_rank_is_named_with_its_node_within_the_jobs_own_threshold(watched):
    rank = watched.twin.inject_hang("train-02", 9)
    events = hangs(watched.run(120))
    [event] = events
    assert rank == 9
    assert event.job == "train-02" and event.ranks == [9] and event.nodes == ["node-010"]
    assert event.gpus == ["node-010/1"] and event.ranks_total == 32
    assert "collective sequence" in event.how
    # 20 steps of 1.5 s, held to at least three heartbeat intervals; far below NCCL's watchdog.
    assert event.threshold_s == 30 and event.stalled_for_s >= event.threshold_s
    assert event.stalled_for_s < NCCL_WATCHDOG_S / 5


def test_a_gpu_that_fell_off_the_bus_is_the_silent_rank_the_others_wait_for(watched):
    watched.twin.inject_xid("node-005", 2, 79)
    [event] = hangs(watched.run(120))
    assert event.job == "train-01" and event.ranks == [34] and event.nodes == ["node-005"]
    assert "stopped beating" in event.how


def test_a_restart_is_not_a_hang_and_the_restarted_job_is_watched_again(watched):
    watched.twin.inject_hang("train-02", 3)
    assert len(hangs(watched.run(60))) == 1
    watched.twin.restart_from_checkpoint("train-02", "test")
    assert hangs(watched.run(900)) == []  # restarting (processes gone), then running again
    assert watched.twin.job("train-02").state == "running"
    watched.twin.inject_hang("train-02", 20)
    [again] = hangs(watched.run(60))
    assert again.ranks == [20]


def beat(rank: int, step: int, t: float, *, seq: int | None = None, step_time: float = 2.0) -> Heartbeat:
    return Heartbeat(
        cluster="sim-a",
        job="j",
        rank=rank,
        node=f"node-{rank // 8 + 1:03d}",
        gpu=rank % 8,
        step=step,
        step_time_s=step_time,
        time=T0 + timedelta(seconds=t),
        collective_seq=seq,
    )


def test_the_threshold_follows_the_jobs_step_time_and_stops_at_half_the_watchdog():
    fast, slow = HangDetector("sim-a"), HangDetector("sim-a")
    for i in range(1, 20):
        fast.observe(beat(0, i, i * 2.0, step_time=2.0))
        slow.observe(beat(0, i, i * 60.0, step_time=60.0))
    assert fast.threshold_s("j") == 40.0
    assert slow.threshold_s("j") == NCCL_WATCHDOG_S / 2


def test_keepalive_repeats_are_not_progress_and_progress_resuming_cancels_the_hang():
    d = HangDetector("sim-a")
    for t in range(0, 100, 5):
        d.observe(beat(0, t // 5, t))
        d.observe(beat(1, t // 5, t))
    for t in range(100, 200, 5):  # alive, not progressing
        d.observe(beat(0, 19, t, seq=20))
        d.observe(beat(1, 19, t, seq=19))
    [stuck] = d.evaluate(T0 + timedelta(seconds=200))
    assert stuck.ranks == [1] and not stuck.resumed
    assert d.evaluate(T0 + timedelta(seconds=205)) == []  # reported once
    d.observe(beat(0, 20, 206))
    d.observe(beat(1, 20, 206))
    [resumed] = d.evaluate(T0 + timedelta(seconds=207))
    assert resumed.resumed and resumed.job == "j"


def test_a_job_whose_ranks_all_went_silent_ended_and_is_forgotten():
    d = HangDetector("sim-a", forget_after_s=600)
    for t in range(0, 50, 5):
        d.observe(beat(0, t // 5, t))
    assert d.evaluate(T0 + timedelta(seconds=300)) == []
    assert d.evaluate(T0 + timedelta(seconds=1000)) == []
    assert d.jobs == []


def test_ranks_that_stopped_together_are_all_named():
    d = HangDetector("sim-a")
    for t in range(0, 200, 5):
        step = min(t // 5, 10)
        d.observe(beat(0, step, t))
        d.observe(beat(8, step, t))
    [event] = d.evaluate(T0 + timedelta(seconds=200))
    assert event.ranks == [0, 8] and event.nodes == ["node-001", "node-002"]
    assert "no first-stalled rank" in event.how
