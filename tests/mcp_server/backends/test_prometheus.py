"""The Prometheus telemetry source against a real Prometheus (Debian's ``prometheus``) that scrapes
the fleet twin's dcgm-exporter endpoint; and the telemetry tools on top of it."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from mcp import Client
from prometheus_api_client import PrometheusConnect

from aiops.loopback_prometheus import prometheus
from fleet import FleetSpec, FleetTwin
from fleet.exporter import exporter_app
from mcp_server.backends.prometheus import PrometheusTelemetry
from mcp_server.backends.twin.backend import TwinBackend
from mcp_server.deps import ServerDeps
from mcp_server.gate.policy import PolicyGate
from mcp_server.identity import fixed_identity
from mcp_server.server import build_server
from tests.mcp_server.support import VIEWER, error, held, ok
from tests.system_packages import require
from tests.waiting import eventually

pytestmark = pytest.mark.slow

PROMETHEUS = shutil.which("prometheus")
require(
    PROMETHEUS, "the prometheus binary (or a Prometheus 2.x on PATH)", "sudo apt-get install -y prometheus"
)

FIRST_SCRAPE_S = 30.0  # the first scrape lands ~5 s after start; leave room on a busy machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Scraped:
    twin: FleetTwin
    telemetry: PrometheusTelemetry
    url: str


class _Quiet(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@pytest.fixture
async def scraped(tmp_path: Path) -> AsyncIterator[Scraped]:
    twin = FleetTwin(FleetSpec.small())
    twin.advance(600)
    exporter_port = free_port()
    server = _Quiet(
        uvicorn.Config(exporter_app(twin), host="127.0.0.1", port=exporter_port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, within_s=10, what="the exporter to listen")
    try:
        with prometheus(tmp_path, f"127.0.0.1:{exporter_port}") as url:
            telemetry = PrometheusTelemetry(url)
            client = PrometheusConnect(url, disable_ssl=True)

            async def scraped_once() -> bool:
                try:
                    rows = await asyncio.to_thread(client.custom_query, 'up{job="dcgm"} == 1')
                except Exception:
                    return False  # not listening yet
                return bool(rows)

            await eventually(scraped_once, within_s=FIRST_SCRAPE_S, what="Prometheus to scrape the exporter")
            yield Scraped(twin=twin, telemetry=telemetry, url=url)
    finally:
        server.should_exit = True
        await task


async def scrape_after(scraped: Scraped, check: str) -> None:
    """Wait until a query shows what the twin changed (the next scrape, a second away)."""
    client = PrometheusConnect(scraped.url, disable_ssl=True)
    await eventually(
        lambda: asyncio.to_thread(lambda: bool(client.custom_query(check))),
        within_s=15,
        what=f"Prometheus to see {check}",
    )


async def test_gpu_metrics_come_from_the_scraped_dcgm_series(scraped: Scraped) -> None:
    series = await scraped.telemetry.gpu_metrics(
        "node-003", [2], ["DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_PROF_GR_ENGINE_ACTIVE"], 300, 5
    )
    assert [(s.gpu, s.field) for s in series] == [
        (2, "DCGM_FI_DEV_GPU_TEMP"),
        (2, "DCGM_FI_PROF_GR_ENGINE_ACTIVE"),
    ]
    temp = series[0]
    assert temp.samples and temp.last == scraped.twin.telemetry.counters("node-003", 2).gpu_temp_c
    assert series[1].last == pytest.approx(0.93)  # a busy GPU of a running job


async def test_ecc_counters_and_xids_show_up_after_the_next_scrape(scraped: Scraped) -> None:
    scraped.twin.inject_ecc("node-010", 4, "dbe")
    await scrape_after(scraped, 'DCGM_FI_DEV_ECC_DBE_VOL_TOTAL{Hostname="node-010",gpu="4"} > 0')
    (gpu,) = await scraped.telemetry.ecc_counters("node-010", 4)
    assert (gpu.dbe_volatile, gpu.row_remap_pending, gpu.verdict) == (1, True, "reset_needed")
    await scrape_after(scraped, 'DCGM_EXP_XID_ERRORS_COUNT{Hostname="node-010",xid="48"} > 0')
    history = await scraped.telemetry.xid_history("node-010", 4, 600)
    assert {o.xid for o in history} >= {48, 63}
    assert all((o.node, o.gpu) == ("node-010", 4) for o in history)
    faults = {(f.node, f.gpu): f for f in await scraped.telemetry.gpu_faults(600)}
    assert faults[("node-010", 4)].dbe == 1


async def test_the_telemetry_tools_and_promql_over_prometheus(scraped: Scraped) -> None:
    deps = ServerDeps(
        backend=TwinBackend(scraped.twin),
        telemetry=scraped.telemetry,
        gate=PolicyGate.from_directory(),
        identity=fixed_identity(VIEWER),
    )
    async with held(Client(build_server(deps))) as client:
        answer = ok(
            await client.call_tool("promql", {"query": 'count(DCGM_FI_DEV_GPU_TEMP{Hostname="node-001"})'})
        )
        assert answer["result_type"] == "vector"
        assert answer["series"][0]["samples"][0]["value"] == 8
        ranged = ok(
            await client.call_tool(
                "promql",
                {
                    "query": 'DCGM_FI_DEV_POWER_USAGE{Hostname="node-001",gpu="0"}',
                    "range_minutes": 2,
                    "step_s": 5,
                },
            )
        )
        assert ranged["result_type"] == "matrix" and ranged["series"][0]["labels"]["Hostname"] == "node-001"
        metrics = ok(await client.call_tool("gpu_metrics", {"node": "node-002", "window_minutes": 5}))
        assert metrics["source"] == "prometheus" and len({s["gpu"] for s in metrics["series"]}) == 8
        assert "parse error" in error(await client.call_tool("promql", {"query": "rate(("}))
