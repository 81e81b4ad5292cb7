"""The throughput detector on the fleet twin's per-rank step timings."""

from __future__ import annotations

from datetime import timedelta

import pytest

from events.detectors import ThroughputDetector
from events.fabric import FabricMap
from events.models import Heartbeat, ThroughputEvent
from fleet import FleetSpec, FleetTwin, JobSpec
from tests.agents.factories import T0
from tests.events.detectors.conftest import heartbeat


def slowdowns(events: list) -> list[ThroughputEvent]:
    return [e for e in events if isinstance(e, ThroughputEvent)]


def test_a_healthy_fleet_keeps_its_baseline(watched):
    assert slowdowns(watched.run(900)) == []
    assert watched.throughput.baseline("train-01") == pytest.approx(2.0, rel=0.02)
    assert watched.throughput.baseline("train-02") == pytest.approx(1.5, rel=0.02)


def test_a_degraded_leaf_switch_slows_the_job_under_it_and_is_named(watched):
    watched.twin.degrade_link("leaf-02", 2.0)
    assert slowdowns(watched.run(100)) == []  # not sustained yet
    [event] = slowdowns(watched.run(60))
    assert event.job == "train-02" and event.signature == "network"
    assert event.suspect_switches == ["leaf-02"] and event.suspect_nodes == []
    assert event.nodes == ["node-009", "node-010", "node-011", "node-012"]
    assert event.slowdown == pytest.approx(1.3, abs=0.03) and event.sustained_s >= 120
    assert slowdowns(watched.run(300)) == []  # reported once per episode


def test_a_thermally_throttled_gpu_is_the_straggler_with_its_rank_and_node(watched):
    watched.twin.throttle_gpu("node-004", 6)
    [event] = slowdowns(watched.run(200))
    assert event.job == "train-01" and event.signature == "straggler"
    assert event.suspect_ranks == [30] and event.suspect_nodes == ["node-004"]
    assert event.suspect_gpus == ["node-004/6"] and event.node == "node-004"
    assert event.slowdown == pytest.approx(1.42, abs=0.03)


def test_a_repaired_link_brings_a_recovered_event_after_a_sustained_window(watched):
    watched.twin.degrade_link("leaf-02", 2.0)
    [slow] = slowdowns(watched.run(200))
    watched.twin.degrade_link("leaf-02", 1.0)
    [back] = slowdowns(watched.run(200))
    assert back.recovered and back.job == "train-02" and back.event_id != slow.event_id


def test_a_blip_shorter_than_the_sustained_window_is_ignored(watched):
    watched.twin.degrade_link("leaf-01", 3.0)
    watched.run(60)
    watched.twin.degrade_link("leaf-01", 1.0)
    assert slowdowns(watched.run(600)) == []


def test_a_job_across_two_leaves_names_both_and_leaves_the_choice_to_the_agent():
    spec = FleetSpec(
        jobs=[
            JobSpec(name="big", nodes=12, step_time_s=2.0, checkpoint_interval_s=1800, checkpoint_write_s=30)
        ]
    )
    twin = FleetTwin(spec)
    d = ThroughputDetector(
        "sim-a", fabric=FabricMap.from_labels({n.name: n.labels for n in twin.nodes.values()})
    )
    twin.subscribe_heartbeats(lambda b: d.observe(heartbeat(b)))
    events = []
    for i in range(40):
        if i == 10:
            twin.degrade_link("leaf-01", 2.0)
        twin.advance(10)
        events += d.evaluate(twin.now())
    [event] = events
    assert event.signature == "network" and event.suspect_switches == ["leaf-01", "leaf-02"]


def test_beats_without_a_compute_split_that_slow_uniformly_are_the_workload():
    d = ThroughputDetector("sim-a", sustained_s=30)
    events = []
    for t in range(0, 300, 5):
        step_time = 2.0 if t < 100 else 2.8
        for rank in range(4):
            d.observe(
                Heartbeat(
                    cluster="sim-a",
                    job="j",
                    rank=rank,
                    node=f"node-{rank + 1:03d}",
                    step=t // 5 + 1,
                    step_time_s=step_time,
                    time=T0 + timedelta(seconds=t),
                )
            )
        events += d.evaluate(T0 + timedelta(seconds=t))
    [event] = events
    assert event.signature == "workload" and event.suspect_nodes == [] and event.suspect_switches == []
