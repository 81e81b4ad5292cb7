"""``aiops agent`` with ``AIOPS_AGENT_METRICS_PORT``: the process that plans serves its own
``/metrics`` (planner latency, Claude tokens and dollars), and stops serving when it stops."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx2
import pytest

from aiops.agent_process import run_agent
from aiops.platform import Platform
from aiops.settings import Settings

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_the_agent_process_serves_its_own_metrics(tmp_path: Path) -> None:
    async with Platform(Settings(http_port=0, embedded_agent=False), data_dir=tmp_path, run_clock=False) as p:
        port = free_port()
        settings = Settings(nats_url=p.nats_url, agent_metrics_port=port, http_port=0)
        stop, ready = asyncio.Event(), asyncio.Event()
        agent = asyncio.create_task(
            run_agent(settings, mcp_url=p.http_url, token=p.agent_token, stop=stop, ready=ready.set)
        )
        await asyncio.wait_for(ready.wait(), 60)
        async with httpx2.AsyncClient() as http:
            served = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
        stop.set()
        await agent
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()

    assert "# TYPE aiops_planner_seconds histogram" in served
    assert "# TYPE aiops_claude_cost_usd_total counter" in served
