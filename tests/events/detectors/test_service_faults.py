"""The detectors through a NATS outage: events found while the server is down wait in the outbox
and are all published once it is back (the hang detector used to lose them), and the loop never
stops."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import nats.errors
import pytest

from events import subjects
from events.connection import connect
from events.detectors import DetectorService
from events.liveness import Liveness
from events.models import HangEvent
from events.streams import ensure_jetstream
from tests.nats_cluster import NatsCluster
from tests.waiting import eventually

pytestmark = pytest.mark.slow


def hang(i: int) -> HangEvent:
    return HangEvent(
        event_id=f"hang-{i}",
        time=datetime(2026, 12, 1, 12, 0, i, tzinfo=UTC),
        cluster="sim-a",
        source="hang-detector",
        job=f"train-{i:02d}",
        stalled_for_s=120.0,
    )


async def test_events_found_while_nats_is_down_are_all_published_once_it_is_back(tmp_path: Path) -> None:
    with NatsCluster(tmp_path, size=1) as server:
        # A tiny outbound buffer: a publish while disconnected fails at once instead of after its
        # ack time-out (either way it is a transient failure the outbox rides out).
        nc = await connect(server.url, name="detectors", pending_size=64)
        js = nc.jetstream()
        await ensure_jetstream(js)
        liveness = Liveness()
        service = DetectorService(nc, js, cluster="sim-a", evaluate_interval_s=0.05, liveness=liveness)
        stop = asyncio.Event()
        loop = asyncio.create_task(service.run(stop))

        server.kill("n1")
        await eventually(lambda: not nc.is_connected, what="the client to notice")
        for batch in range(4):
            with pytest.raises((nats.errors.Error, asyncio.TimeoutError, OSError)):
                await service._publish([hang(5 * batch + k) for k in range(5)])
        assert service.unpublished == 20 and service.publish_errors >= 4
        assert not loop.done()  # the loop rides it out

        server.restart("n1")
        await eventually(lambda: service.unpublished == 0, within_s=30, what="the outbox to empty")
        info = await js.stream_info(subjects.STREAM_EVENTS)
        assert info.state.messages == 20  # all of them, once each (deduplicated on event_id)
        await eventually(lambda: liveness.stale() == [], what="the detectors healthy")
        stop.set()
        await loop
        assert service.events_dropped == 0
        await nc.close()
