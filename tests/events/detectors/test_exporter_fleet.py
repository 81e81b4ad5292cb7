"""DCGM straight from a fleet's dcgm-exporters (``AIOPS_DCGM_EXPORTERS``, no Prometheus): the twin's
exporter serves one node per URL on loopback; the source reads them all, at most ``concurrency`` at a
time; an exporter that refuses or never answers is reported (``down``, metrics, a log line) and the
others still count; a fault on a live node becomes an event in GPU_EVENTS."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from prometheus_client import REGISTRY

from events import subjects
from events.detectors import DetectorService, ExporterSource
from events.detectors.dcgm import METRIC_NAMES, group_samples
from events.detectors.exposition import parse_exposition
from events.models import parse_event
from fleet import FleetTwin
from fleet.exporter import render_metrics
from tests.fleet.exporter_server import serving

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def refused_url() -> Iterator[str]:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    yield f"http://127.0.0.1:{port}/metrics"


@contextlib.contextmanager
def silent_url() -> Iterator[str]:
    """A port that accepts the connection and never answers (a wedged exporter)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield f"http://127.0.0.1:{s.getsockname()[1]}/metrics"


def up(url: str) -> float | None:
    return REGISTRY.get_sample_value("aiops_dcgm_exporter_up", {"exporter": url})


def failures(url: str) -> float:
    return REGISTRY.get_sample_value("aiops_dcgm_exporter_scrape_failures_total", {"exporter": url}) or 0.0


async def test_every_exporter_is_read_and_a_refusing_or_silent_one_is_reported_not_fatal(
    twin: FleetTwin, caplog: pytest.LogCaptureFixture
) -> None:
    nodes = ["node-001", "node-002", "node-009", "node-010"]
    async with serving(twin) as base:
        with refused_url() as refused, silent_url() as silent:
            urls = [f"{base}/metrics?node={n}" for n in nodes] + [refused, silent]
            source = ExporterSource(urls, timeout_s=1.0, concurrency=4, names=METRIC_NAMES)
            samples = await source.scrape()
            again = await source.scrape()

    readings = group_samples(samples)
    assert sorted({r.node for r in readings}) == nodes
    assert len(readings) == sum(len(twin.node(n).gpus) for n in nodes)
    assert len(again) == len(samples) and source.malformed == 0
    assert set(source.down) == {refused, silent}
    assert source.down[silent].startswith("no answer within 1s")
    assert "Connect" in source.down[refused]
    assert [up(u) for u in urls] == [1, 1, 1, 1, 0, 0]
    assert failures(refused) == 2 and failures(silent) == 2
    said = [r.getMessage() for r in caplog.records if "cannot be read" in r.getMessage()]
    assert len(said) == 2  # once per exporter going down, not once per round


async def test_a_round_in_which_no_exporter_answers_fails() -> None:
    with refused_url() as one, refused_url() as two:
        source = ExporterSource([one, two], timeout_s=1.0)
        with pytest.raises(OSError, match="no dcgm-exporter answered"):
            await source.scrape()


class _Counting:
    """Exporters on one threaded loopback server (a path per node) that count requests in flight.
    Each request is held until ``limit`` are in flight or a moment passed, so overlapping reads
    overlap here."""

    def __init__(self, body: bytes, limit: int) -> None:
        self.in_flight = 0
        self.most = 0
        self.served = 0
        cond = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with cond:
                    outer.in_flight += 1
                    outer.served += 1  # before the answer: the client may finish before this thread runs on
                    outer.most = max(outer.most, outer.in_flight)
                    cond.notify_all()
                    cond.wait_for(lambda: outer.in_flight >= limit, timeout=0.2)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                with cond:
                    outer.in_flight -= 1

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"


async def test_no_more_than_concurrency_exporters_are_read_at_once(twin: FleetTwin) -> None:
    text = render_metrics(twin, "node-001")
    exporters = _Counting(text.encode(), limit=3)
    try:
        urls = [f"{exporters.base}/node-{i:03d}/metrics" for i in range(12)]
        source = ExporterSource(urls, timeout_s=10.0, concurrency=3, names=METRIC_NAMES)
        samples = await source.scrape()
    finally:
        exporters.server.shutdown()
    assert exporters.served == 12 and source.down == {}
    assert 1 <= exporters.most <= 3
    assert len(samples) == 12 * len(parse_exposition(text, METRIC_NAMES)[0])  # every exporter's


async def test_a_fault_behind_one_of_the_exporters_lands_in_gpu_events_while_another_is_down(
    twin: FleetTwin, nc: NatsClient, js: JetStreamContext
) -> None:
    async with serving(twin) as base:
        with refused_url() as refused:
            urls = [f"{base}/metrics?node={n}" for n in ("node-009", "node-010")] + [refused]
            source = ExporterSource(urls, timeout_s=1.0, names=METRIC_NAMES)
            service = DetectorService(nc, js, cluster="sim-a", clock=twin.now, dcgm_source=source)
            assert await service.scrape() == 0
            twin.inject_ecc("node-010", 1, "remap_pending")
            found = await service.scrape()
    assert found == 2 and service.scrape_errors == 0  # the ECC state and the Xid 63 count
    sub = await js.pull_subscribe(subjects.events_all(), durable=None)
    events = [parse_event(m.data) for m in await sub.fetch(2, timeout=5)]
    assert sorted((e.kind, e.node) for e in events) == [("ecc", "node-010"), ("xid", "node-010")]
    assert refused in source.down
