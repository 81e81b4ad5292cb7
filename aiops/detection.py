"""Wires the detectors into the embedded platform: the twin's dcgm-exporter endpoint, its training
heartbeats on core NATS, and the DCGM, hang, throughput and numerics detectors publishing into GPU_EVENTS.

With HTTP on, the twin's metrics are served at ``/metrics`` on ``metrics_port`` (dcgm-exporter's
9400 by default; any free port when the platform was asked for free ports) and the DCGM detector
scrapes them over HTTP like a real exporter; a Prometheus can scrape the same URL. Without HTTP
(tests, benchmarks, scenarios), the detector reads the twin's exporter in process, per GPU, with no
text to render and parse: a scrape of 2,048 GPUs is a few milliseconds of the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Coroutine, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Literal

import uvicorn
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from aiops.observability import SERVICES
from aiops.settings import Settings
from events import subjects
from events.checkpoint_times import CheckpointTimeRecorder, CheckpointTimes
from events.detectors import (
    DetectorService,
    ExporterSource,
    MetricSource,
    ReadingSource,
    ThroughputDetector,
)
from events.detectors.dcgm import FIELDS as DCGM_FIELDS
from events.detectors.dcgm import LAST_XID, METRIC_NAMES, DcgmDetector, GpuReading
from events.detectors.prometheus_changes import PrometheusChangesSource
from events.detectors.relay import RelaySource
from events.documents import KvDocuments
from events.fabric import FabricMap
from events.heartbeat import HeartbeatRelay
from events.kmsg_parser import normalise_pci_bus_id
from events.liveness import Liveness
from events.models import Heartbeat, utcnow
from events.supervise import supervised
from fleet import FleetTwin
from fleet.exporter import METRIC_FIELDS, RAW_FIELDS, exporter_app, snapshot
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


class TwinSource:
    """The twin's dcgm-exporter, read in process: per GPU, the fields its ``/metrics`` carries."""

    def __init__(self, twin: FleetTwin) -> None:
        self.twin = twin
        # detector field <- position of the exported value in a snapshot's raw counters
        self._at = [(field, RAW_FIELDS.index(METRIC_FIELDS[metric])) for metric, field in DCGM_FIELDS.items()]
        self._last_xid = RAW_FIELDS.index(METRIC_FIELDS[LAST_XID])
        self._pci: dict[str, str | None] = {}
        self._last: dict[
            tuple[str, str], tuple[tuple[float, ...], tuple[tuple[int, int], ...], GpuReading]
        ] = {}

    @property
    def where(self) -> str:
        return "in-process exporter"

    async def read(self) -> list[GpuReading]:
        out = []
        last, self._last = self._last, {}
        for s in snapshot(self.twin):
            labels = s.labels
            key = (labels["Hostname"], labels["gpu"])
            before = last.get(key)
            if before is not None and before[0] == s.raw and before[1] == s.xid_counts:
                reading = before[2]  # unchanged since the last scrape (most GPUs, most scrapes)
            else:
                exported = labels["pci_bus_id"]
                if exported not in self._pci:
                    self._pci[exported] = normalise_pci_bus_id(exported)
                reading = GpuReading(
                    labels["Hostname"],
                    int(labels["gpu"]),
                    self._pci[exported],
                    labels["UUID"],
                    {field: float(s.raw[i]) for field, i in self._at},
                    dict(s.xid_counts),
                    float(s.raw[self._last_xid]),
                )
            self._last[key] = (s.raw, s.xid_counts, reading)
            out.append(reading)
        return out


async def checkpoint_times_of(js: JetStreamContext) -> KvDocuments[CheckpointTimes]:
    """The jobs' checkpoint write times measured from their heartbeats (the detectors write them)."""
    return KvDocuments(await js.key_value(subjects.BUCKET_CHECKPOINT_TIMES), CheckpointTimes)


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
    liveness: Liveness | None = None,
) -> Detection:
    """Start everything; ``stack`` undoes it, ``stop`` ends the loops ``spawn`` runs."""
    source: MetricSource | ReadingSource
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
        source = TwinSource(twin)

    service = DetectorService(
        nc,
        js,
        cluster=twin.name,
        throughput=ThroughputDetector(twin.name, fabric=twin_fabric(twin)),
        dcgm_source=source,
        clock=twin.now,
        scrape_interval_s=settings.dcgm_scrape_interval_s,
        liveness=liveness,
        checkpoints=CheckpointTimeRecorder(twin.name, await checkpoint_times_of(js)),
    )
    await service.start()
    stack.push_async_callback(service.stop)

    relay = HeartbeatRelay(nc, liveness=liveness)
    cluster = twin.name
    twin.telemetry.heartbeat_interval_s = settings.heartbeat_interval_s

    # RankBeat holds scalars only: a shallow copy of its fields is what dataclasses.asdict gives,
    # without asdict's deep copies (80% of a 1,000-node twin's loop time at x60 went into them).
    names = [f.name for f in dataclasses.fields(RankBeat)]

    def offer(beat: RankBeat) -> None:
        # The twin's beats are well-formed by construction: skip re-validating thousands a second.
        relay.offer(Heartbeat.model_construct(cluster=cluster, **{n: getattr(beat, n) for n in names}))

    stack.callback(twin.subscribe_heartbeats(offer))
    registry = liveness or Liveness()
    spawn(supervised(relay.name, lambda: relay.run(stop), stop, liveness=registry))
    spawn(supervised(service.probe.name, lambda: service.run(stop), stop, liveness=registry))
    return Detection(service=service, relay=relay, metrics_url=metrics_url, server=server)


class DcgmSettingError(ValueError):
    """The DCGM settings of a real backend name no source, or two (an error at start)."""


DcgmChoice = Literal["prometheus", "exporters", "nodes", "off"]


def dcgm_choice(settings: Settings) -> DcgmChoice:
    """Where a real backend's DCGM detector reads, from ``AIOPS_DCGM_SOURCE``, else from which of
    ``AIOPS_PROMETHEUS_URL`` and ``AIOPS_DCGM_EXPORTERS`` is set. Never a guess: both, neither, or a
    source without its setting (or a setting its source leaves unused) is a ``DcgmSettingError``."""
    prometheus, exporters = bool(settings.prometheus_url), bool(settings.dcgm_exporter_urls)
    choice = settings.dcgm_source
    if choice is None:
        if prometheus and exporters:
            raise DcgmSettingError(
                "both AIOPS_PROMETHEUS_URL and AIOPS_DCGM_EXPORTERS are set: say which the DCGM detector "
                "reads with AIOPS_DCGM_SOURCE=prometheus or exporters (the same GPUs read twice would "
                "count their faults twice)"
            )
        if not (prometheus or exporters):
            raise DcgmSettingError(
                "no DCGM source for the detector: set AIOPS_PROMETHEUS_URL (a Prometheus scraping "
                "dcgm-exporter), AIOPS_DCGM_EXPORTERS (the exporters' URLs), or AIOPS_DCGM_SOURCE=nodes "
                "(node agents relay theirs: aiops node --dcgm-exporter) or off (no DCGM detection)"
            )
        return "prometheus" if prometheus else "exporters"
    if choice == "prometheus" and not prometheus:
        raise DcgmSettingError("AIOPS_DCGM_SOURCE=prometheus needs AIOPS_PROMETHEUS_URL")
    if choice == "exporters" and not exporters:
        raise DcgmSettingError("AIOPS_DCGM_SOURCE=exporters needs AIOPS_DCGM_EXPORTERS")
    if choice != "exporters" and exporters:
        raise DcgmSettingError(
            f"AIOPS_DCGM_EXPORTERS is set but AIOPS_DCGM_SOURCE={choice} leaves it unused: unset one"
        )
    return choice


async def start_wall_detection(
    *,
    nc: NatsClient,
    js: JetStreamContext,
    cluster: str,
    settings: Settings,
    stack: AsyncExitStack,
    spawn: Spawn,
    stop: asyncio.Event,
) -> Detection:
    """The detectors of a real fleet, on the wall clock: heartbeats from training processes over
    NATS (``TrainingHeartbeat``); DCGM (``dcgm_choice``) from the Prometheus at
    ``AIOPS_PROMETHEUS_URL`` asked only for what changed (events/detectors/prometheus_changes.py),
    from the dcgm-exporters of ``AIOPS_DCGM_EXPORTERS`` read directly, from the node agents' relays
    on NATS, or off (the kernel log and heartbeats still detect)."""
    resync_s = 3600.0
    choice = dcgm_choice(settings)
    source: MetricSource | ReadingSource | None = None
    where = ""
    if choice == "prometheus":
        assert settings.prometheus_url
        source = PrometheusChangesSource(settings.prometheus_url, resync_s=resync_s, prefer_recorded=True)
        where = settings.prometheus_url
    elif choice == "exporters":
        urls = settings.dcgm_exporter_urls
        source = ExporterSource(
            urls,
            timeout_s=settings.dcgm_exporter_timeout_s,
            concurrency=settings.dcgm_exporter_concurrency,
            names=METRIC_NAMES,
        )
        where = urls[0] if len(urls) == 1 else f"{len(urls)} dcgm-exporters ({urls[0]}, ...)"
    elif choice == "nodes":
        relay = RelaySource(js, cluster)
        await relay.start()
        stack.push_async_callback(relay.stop)
        stack.callback(SERVICES.add("dcgm", lambda: (relay.reports, 0, relay.dead_lettered)))
        source = relay
        where = relay.where
    else:
        log.warning("AIOPS_DCGM_SOURCE=off: no DCGM detection (the kernel log and heartbeats still detect)")
    if source is not None:
        log.info("DCGM detector reads %s every %gs", where, settings.dcgm_scrape_interval_s)
    service = DetectorService(
        nc,
        js,
        cluster=cluster,
        # GPUs that do not change are not read between resyncs: keep their baseline past a resync.
        dcgm=DcgmDetector(cluster, forget_after_s=3 * resync_s),
        dcgm_source=source,
        clock=utcnow,
        scrape_interval_s=settings.dcgm_scrape_interval_s,
        checkpoints=CheckpointTimeRecorder(cluster, await checkpoint_times_of(js)),
    )
    await service.start()
    stack.push_async_callback(service.stop)
    relay_beats = HeartbeatRelay(nc)  # for in-process producers; training processes publish their own
    spawn(relay_beats.run(stop))
    spawn(service.run(stop))
    return Detection(service=service, relay=relay_beats, metrics_url=where)
