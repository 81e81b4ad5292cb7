"""/healthz and /readyz on the platform's HTTP port: unauthenticated, live while the loops run,
ready only while NATS, the streams and consumers answer and no loop is stale."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest

from aiops.platform import Platform
from aiops.settings import Settings
from tests.nats_cluster import NatsCluster
from tests.waiting import eventually

pytestmark = pytest.mark.slow


async def test_health_and_readiness_follow_the_nats_server(tmp_path: Path) -> None:
    with NatsCluster(tmp_path / "nats", size=1) as server:
        settings = Settings(nats_url=server.url, http_port=0, metrics_port=0)
        async with (
            Platform(settings, data_dir=tmp_path, run_clock=False) as p,
            httpx2.AsyncClient(base_url=p.http_url.removesuffix("/mcp"), timeout=10) as http,
        ):
            live = await http.get("/healthz")  # no token
            assert live.status_code == 200 and live.json()["live"] is True
            loops = live.json()["loops"]
            assert {"consume GPU_EVENTS/triage", "consume GPU_KMSG/kmsg-parser", "detectors"} <= set(loops)

            async def ready() -> bool:
                return (await http.get("/readyz")).status_code == 200

            await eventually(ready, within_s=20, what="ready")
            body = (await http.get("/readyz")).json()
            assert body["problems"] == [] and body["loops"]["detectors"]["state"] == "running"
            assert (await http.post("/mcp", json={})).status_code == 401  # the MCP endpoint still needs one

            server.kill("n1")

            async def not_ready() -> bool:
                return not await ready()

            await eventually(not_ready, within_s=20, what="not ready without NATS")
            assert "NATS: not connected" in (await http.get("/readyz")).json()["problems"]
            assert (await http.get("/healthz")).status_code == 200  # the process is fine: do not restart it
            server.restart("n1")
            await eventually(ready, within_s=30, what="ready again after the restart")
