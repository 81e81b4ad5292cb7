"""Benchmark: MCP tool-call latency on a big fleet twin (1,500 nodes / 12,000 GPUs).

For ``list_nodes`` (one page of 100), ``describe_node``, ``fleet_health`` and ``top_offenders``,
p50 and p99 of one call as a client sees it:

- server: ``MCPServer.call_tool`` directly (the tool and its backend, no protocol);
- in-process: ``mcp.Client(server)`` — the SDK's direct dispatch, including its client-side
  validation of every result against the tool's output schema;
- stdio: a server subprocess (``--serve stdio``), as Claude Desktop / Claude Code start it;
- HTTP: a server subprocess over stateless streamable HTTP with a bearer token (``--serve http``).

Targets (issue 5): p50 under 1 ms in process and under 5 ms over stdio for the single-object tools.
Writes ``evals/out/mcp_latency.json`` and prints a table.
Run: ``.venv/bin/python -m evals.benchmarks.mcp_latency`` (about two minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import platform
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.server import MCPServer

from fleet import FleetSpec, FleetTwin, JobSpec
from mcp_server.backends.twin.backend import TwinBackend
from mcp_server.backends.twin.telemetry import TwinTelemetry
from mcp_server.deps import ServerDeps
from mcp_server.gate.policy import PolicyGate, Principal
from mcp_server.identity import BearerTokens, fixed_identity
from mcp_server.server import build_server

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "evals" / "out" / "mcp_latency.json"
TOKEN = "bench-token-0123456789abcdef"
VIEWER = Principal(id="bench", role="viewer")
CALLS = {"server": 1000, "in_process": 1000, "stdio": 500, "http": 300}
WARMUP = 30
TOOLS: dict[str, dict[str, Any]] = {
    "describe_node": {"node": "node-0742"},
    "list_nodes": {},
    "fleet_health": {},
    "top_offenders": {},
}


def big_fleet() -> FleetTwin:
    """1,500 nodes (12,000 H100) under 50 leaf switches: 45 jobs of 32 nodes, 30 spares, 30 idle;
    a few hundred Xids spread over the fleet, so top_offenders has something to rank."""
    spec = FleetSpec(
        leaf_switches=50,
        nodes_per_leaf=30,
        nodes_per_rack=4,
        spare_nodes=30,
        jobs=[
            JobSpec(
                name=f"train-{i:02d}",
                nodes=32,
                step_time_s=2.0,
                checkpoint_interval_s=1800,
                checkpoint_write_s=30,
            )
            for i in range(45)
        ],
    )
    twin = FleetTwin(spec)
    telemetry = TwinTelemetry(twin)
    twin.advance(1800)
    names = list(twin.nodes)
    for i in range(300):
        twin.inject_xid(names[(i * 37) % len(names)], i % 8, (13, 31, 43, 79)[i % 4])
        twin.advance(1)
    telemetry.close()
    return twin


def build(twin: FleetTwin, *, tokens: BearerTokens | None = None) -> MCPServer:
    telemetry = TwinTelemetry(twin)
    twin.inject_xid("node-0001", 0, 31)  # the telemetry source's own history starts now
    identity = tokens.resolver() if tokens else fixed_identity(VIEWER)
    deps = ServerDeps(
        backend=TwinBackend(twin), telemetry=telemetry, gate=PolicyGate.from_directory(), identity=identity
    )
    return build_server(deps, tokens=tokens)


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1e3, 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3, 3),
        "calls": len(ordered),
    }


async def measure(call: Callable[[], Awaitable[Any]], n: int) -> dict[str, float]:
    for _ in range(WARMUP):
        await call()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - start)
    return percentiles(samples)


async def through(client: Client, transport: str) -> dict[str, dict[str, float]]:
    out = {}
    await client.list_tools()
    for tool, arguments in TOOLS.items():

        async def call(tool: str = tool, arguments: dict[str, Any] = arguments) -> None:
            result = await client.call_tool(tool, arguments)
            assert not result.is_error, result.content

        out[tool] = await measure(call, CALLS[transport])
        print(
            f"  {transport:10} {tool:14} p50 {out[tool]['p50_ms']:8.3f} ms  p99 {out[tool]['p99_ms']:8.3f} ms",
            flush=True,
        )
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def main() -> dict[str, Any]:
    print("building the fleet twin (1,500 nodes / 12,000 GPUs)…", flush=True)
    twin = big_fleet()
    server = build(twin)
    quiet()
    gc.collect()
    gc.freeze()  # as `aiops mcp` does once the fleet is built (aiops/cli.py)
    results: dict[str, Any] = {}

    server_side = {}
    for tool, arguments in TOOLS.items():

        async def direct(tool: str = tool, arguments: dict[str, Any] = arguments) -> None:
            await server.call_tool(tool, arguments)

        server_side[tool] = await measure(direct, CALLS["server"])
        print(f"  {'server':10} {tool:14} p50 {server_side[tool]['p50_ms']:8.3f} ms", flush=True)
    results["server"] = server_side

    async with Client(server) as client:
        results["in_process"] = await through(client, "in_process")

    stdio = StdioServerParameters(
        command=sys.executable, args=["-m", "evals.benchmarks.mcp_latency", "--serve", "stdio"], cwd=ROOT
    )
    async with Client(stdio) as client:
        results["stdio"] = await through(client, "stdio")

    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "evals.benchmarks.mcp_latency",
        "--serve",
        "http",
        "--port",
        str(port),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        url = (await process.stdout.readline()).decode().strip()  # printed once it listens
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            results["http"] = await through(client, "http")
    finally:
        process.terminate()
        await process.wait()

    report = {
        "fleet": {"nodes": len(twin.nodes), "gpus": twin.cluster_gpu_count, "jobs": len(twin.jobs)},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "targets": {"in_process_p50_ms": 1.0, "stdio_p50_ms": 5.0, "applies_to": ["describe_node"]},
        "results": results,
    }
    return report


def quiet() -> None:
    """No per-request log lines (the SDK logs each HTTP request at INFO): they would be measured."""
    logging.disable(logging.INFO)


def serve(transport: str, port: int) -> None:
    """The benchmark's server subprocess: the same big twin, over stdio or HTTP."""
    twin = big_fleet()
    tokens = BearerTokens({TOKEN: VIEWER}) if transport == "http" else None
    server = build(twin, tokens=tokens)
    quiet()
    gc.collect()
    gc.freeze()
    if transport == "stdio":
        server.run()
        return
    from aiops.build import serve_http as serving

    async def run() -> None:
        async with serving(server, "127.0.0.1", port) as url:
            print(url, flush=True)
            await asyncio.Event().wait()

    asyncio.run(run())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--serve", choices=["stdio", "http"])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
    else:
        figures = asyncio.run(main())
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {OUT}")
