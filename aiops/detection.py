"""Wires the detectors into the embedded platform: the twin's dcgm-exporter endpoint, its training
heartbeats on core NATS, and the DCGM, hang and throughput detectors publishing into GPU_EVENTS.

With HTTP on, the twin's metrics are served at ``/metrics`` on ``metrics_port`` (dcgm-exporter's
9400 by default; any free port when the platform was asked for free ports) and the DCGM detector
scrapes them over HTTP like a real exporter; a Prometheus can scrape the same URL. Without HTTP
(tests), the detector reads the exporter text in process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Coroutine, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from typing import Any

import uvicorn
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from aiops.settings import Settings
from events.detectors import DetectorService, ExporterSource, MetricSource, TextSource, ThroughputDetector
from events.detectors.dcgm import METRIC_NAMES
from events.fabric import FabricMap
from events.heartbeat import HeartbeatRelay
from events.models import Heartbeat
from fleet import FleetTwin
from fleet.exporter import exporter_app, render_metrics
from fleet.telemetry import RankBeat

log = logging.getLogger(__name__)

Spawn = Callable[[Coroutine[Any, Any, object]], None]


class _MetricsServer(uvicorn.Server):
    """uvicorn without its own signal handling: the platform owns Ctrl-C."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def twin_fabric(twin: FleetTwin) -> FabricMap:
    """Where the twin's nodes sit, from their labels (as GPU feature discovery would label them)."""
    return FabricMap.from_labels({node.name: node.labels for node in twin.nodes.values()})


@dataclass
class Detection:
    service: DetectorService
    relay: HeartbeatRelay
    metrics_url: str = ""
    server: uvicorn.Server | None = None


async def start_detection(
    *,
    nc: NatsClient,
    js: JetStreamContext,
    twin: FleetTwin,
    settings: Settings,
    stack: AsyncExitStack,
    spawn: Spawn,
    stop: asyncio.Event,
    serve_http: bool,
) -> Detection:
    """Start everything; ``stack`` undoes it, ``stop`` ends the loops ``spawn`` runs."""
    source: MetricSource
    server: uvicorn.Server | None = None
    metrics_url = ""
    if serve_http:
        port = 0 if settings.http_port == 0 else settings.metrics_port
        config = uvicorn.Config(
            exporter_app(twin), host=settings.http_host, port=port, log_level="warning", lifespan="off"
        )
        server = _MetricsServer(config)
        task = asyncio.ensure_future(server.serve())
        while not server.started:
            if task.done():
                task.result()  # raises the bind error
            await asyncio.sleep(0.01)

        async def close_server() -> None:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, timeout=10)

        stack.push_async_callback(close_server)
        bound = server.servers[0].sockets[0].getsockname()[1]
        metrics_url = f"http://{settings.http_host}:{bound}/metrics"
        source = ExporterSource(metrics_url, names=METRIC_NAMES)
    else:
        source = TextSource(partial(render_metrics, twin), names=METRIC_NAMES)

    service = DetectorService(
        nc,
        js,
        cluster=twin.name,
        throughput=ThroughputDetector(twin.name, fabric=twin_fabric(twin)),
        dcgm_source=source,
        clock=twin.now,
        scrape_interval_s=settings.dcgm_scrape_interval_s,
    )
    await service.start()
    stack.push_async_callback(service.stop)

    relay = HeartbeatRelay(nc)
    cluster = twin.name
    twin.telemetry.heartbeat_interval_s = settings.heartbeat_interval_s

    def offer(beat: RankBeat) -> None:
        # The twin's beats are well-formed by construction: skip re-validating thousands a second.
        relay.offer(Heartbeat.model_construct(cluster=cluster, **dataclasses.asdict(beat)))

    stack.callback(twin.subscribe_heartbeats(offer))
    spawn(relay.run(stop))
    spawn(service.run(stop))
    return Detection(service=service, relay=relay, metrics_url=metrics_url, server=server)
