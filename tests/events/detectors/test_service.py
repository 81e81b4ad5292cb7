"""The detector service on a real nats-server: heartbeats in over core NATS, events into GPU_EVENTS,
bad heartbeats to the dead-letter subject, scrapes that fail retried."""

from __future__ import annotations

import asyncio
import dataclasses
import math

import pytest

from events import subjects
from events.dead_letter import read_dead_letter
from events.detectors import DetectorService, ExporterSource, TextSource
from events.heartbeat import HeartbeatRelay, TrainingHeartbeat
from events.models import Heartbeat, NumericsEvent, parse_event
from fleet import FleetSpec, FleetTwin
from fleet.exporter import render_metrics
from tests.waiting import eventually

pytestmark = pytest.mark.slow


async def stream_events(js) -> list:
    info = await js.stream_info(subjects.STREAM_EVENTS)
    if not info.state.messages:
        return []
    sub = await js.pull_subscribe(subjects.events_all(), durable=None)
    msgs = await sub.fetch(info.state.messages, timeout=5)
    return [parse_event(m.data) for m in msgs]


async def test_a_hang_seen_in_heartbeats_over_nats_lands_in_gpu_events(nc, js):
    twin = FleetTwin(FleetSpec.small(seed=7))
    service = DetectorService(nc, js, cluster="sim-a", clock=twin.now)
    await service.start()
    relay, stop = HeartbeatRelay(nc), asyncio.Event()
    twin.subscribe_heartbeats(
        lambda b: relay.offer(Heartbeat.model_validate({**dataclasses.asdict(b), "cluster": "sim-a"}))
    )
    publisher = asyncio.create_task(relay.run(stop))
    twin.advance(45 * 60)
    for _ in range(6):
        twin.advance(10)
    twin.inject_hang("train-02", 9)
    for _ in range(6):
        twin.advance(10)
    await eventually(lambda: service.beats_seen == relay.published > 0, within_s=10, what="beats over NATS")
    assert await service.evaluate() == 1
    [event] = await stream_events(js)
    assert event.kind == "hang" and event.job == "train-02" and event.nodes == ["node-010"]
    stop.set()
    await publisher
    await service.stop()


async def test_a_heartbeat_that_does_not_validate_goes_to_the_dead_letter_subject(nc, js):
    service = DetectorService(nc, js, cluster="sim-a")
    await service.start()
    await nc.publish("gpu.heartbeat.sim-a.train-01", b'{"job": "train-01", "rank": -1}')
    await eventually(lambda: service.beats_rejected == 1, within_s=5, what="the bad beat")
    await service.evaluate()
    sub = await js.pull_subscribe("gpu.dlq.heartbeat", durable=None)
    [dead] = await sub.fetch(1, timeout=5)
    letter = read_dead_letter(dead)
    assert "rank" in letter.reason and letter.payload == b'{"job": "train-01", "rank": -1}'
    await service.stop()


async def test_a_scrape_publishes_ecc_events_and_a_dead_exporter_is_retried_not_fatal(nc, js):
    twin = FleetTwin(FleetSpec.small(seed=7))
    service = DetectorService(
        nc, js, cluster="sim-a", clock=twin.now, dcgm_source=TextSource(lambda: render_metrics(twin))
    )
    assert await service.scrape() == 0
    twin.inject_ecc("node-010", 1, "remap_pending")
    assert await service.scrape() == 2  # the ECC state and the Xid 63 count
    kinds = sorted(e.kind for e in await stream_events(js))
    assert kinds == ["ecc", "xid"]

    dead = DetectorService(
        nc,
        js,
        cluster="sim-a",
        dcgm_source=ExporterSource("http://127.0.0.1:9/metrics", timeout_s=1),
        scrape_interval_s=0.01,
        evaluate_interval_s=0.01,
    )
    stop = asyncio.Event()
    runner = asyncio.create_task(dead.run(stop))
    await eventually(lambda: dead.scrape_errors >= 2, within_s=10, what="two failed scrapes")
    stop.set()
    await runner


async def test_a_failing_evaluation_never_stops_scraping_nor_a_failing_scrape_evaluation(nc, js):
    twin = FleetTwin(FleetSpec.small(seed=7))
    service = DetectorService(
        nc,
        js,
        cluster="sim-a",
        clock=twin.now,
        dcgm_source=TextSource(lambda: render_metrics(twin)),
        scrape_interval_s=0.01,
        evaluate_interval_s=0.01,
    )

    def broken(now: object) -> list[object]:
        raise TypeError("can't compare offset-naive and offset-aware datetimes")

    service.hang.evaluate = broken  # type: ignore[method-assign,assignment]
    stop = asyncio.Event()
    runner = asyncio.create_task(service.run(stop))
    twin.inject_ecc("node-010", 1, "remap_pending")
    await eventually(lambda: service.events_published >= 1, within_s=10, what="an ECC event despite evaluate")
    assert service.evaluate_errors >= 1

    # The other way round: a scrape that raises something unexpected; the heartbeat round goes on.
    rounds = service.evaluate_errors

    async def scrape_fails() -> list[object]:
        raise RuntimeError("exporter returned garbage")

    service.dcgm_source = TextSource(lambda: "")
    service.dcgm_source.scrape = scrape_fails  # type: ignore[method-assign,assignment]
    errors = service.scrape_errors
    await eventually(
        lambda: service.scrape_errors > errors + 1 and service.evaluate_errors > rounds + 1,
        within_s=10,
        what="both loops going on",
    )
    stop.set()
    await runner


async def test_a_heartbeat_with_a_naive_time_is_dead_lettered_and_the_detectors_keep_evaluating(nc, js):
    service = DetectorService(nc, js, cluster="sim-a")
    await service.start()
    naive = b'{"cluster": "sim-a", "job": "j", "rank": 0, "node": "n", "step": 1, "step_time_s": 1, "time": "2026-11-29T07:35:00"}'
    await nc.publish("gpu.heartbeat.sim-a.j", naive)
    await eventually(lambda: service.beats_rejected == 1, within_s=5, what="the naive beat refused")
    await service.evaluate()  # would raise TypeError comparing naive with aware times
    sub = await js.pull_subscribe("gpu.dlq.heartbeat", durable=None)
    [dead] = await sub.fetch(1, timeout=5)
    letter = read_dead_letter(dead)
    assert letter.payload == naive and "timezone" in letter.reason
    await service.stop()


async def numerics_events(js) -> list[NumericsEvent]:
    info = await js.stream_info(subjects.STREAM_EVENTS, subjects_filter="gpu.events.numerics.>")
    if not info.state.messages:
        return []
    sub = await js.pull_subscribe("gpu.events.numerics.>", durable=None)
    msgs = await sub.fetch(info.state.messages, timeout=5)
    assert all(m.subject == "gpu.events.numerics.sim-a.train-nan" for m in msgs)
    return [NumericsEvent.model_validate_json(m.data) for m in msgs]


async def test_a_nan_loss_from_training_loops_lands_in_gpu_events_as_one_numerics_event(nats_url, nc, js):
    service = DetectorService(nc, js, cluster="sim-a")
    await service.start()
    await nc.flush()  # subscribed at the server before other connections publish
    loops = [
        TrainingHeartbeat(
            nats_url,
            cluster="sim-a",
            job="train-nan",
            rank=r,
            node=f"node-00{r + 1}",
            gpu=r,
            min_interval_s=0,
        ).start()
        for r in range(2)
    ]
    try:
        for step in range(1, 61):
            loss = 2.0 + 0.01 * (step % 7) if step < 51 else float("nan")
            for hb in loops:
                hb.beat(step, 0.5, loss=loss, grad_norm=1.0 + 0.01 * (step % 5))
        await eventually(lambda: service.beats_seen >= 120, within_s=30, what="every beat over NATS")
        await service.evaluate()
        await service.evaluate()  # the NaN steps again: the same episode, nothing new
        [event] = await numerics_events(js)
    finally:
        for hb in loops:
            hb.close()
        await service.stop()
    assert event.signature == "nonfinite" and event.job == "train-nan"
    assert event.first_bad_step == 51 and event.last_good_step == 50
    assert event.value is not None and math.isnan(event.value)
    assert event.nodes == ["node-001", "node-002"] and event.source == "numerics-detector"
