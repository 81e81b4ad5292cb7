"""``aiops node``: run the node agent (events/node/agent.py) on this GPU node until SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from aiops.settings import Settings


def node(
    kmsg: Annotated[
        Path, typer.Option("--kmsg", help="the kernel ring buffer, or a file in /dev/kmsg's record format")
    ] = Path("/dev/kmsg"),
    source: Annotated[
        str, typer.Option("--source", help="auto (/dev/kmsg, else journalctl -k), kmsg or journal")
    ] = "auto",
    no_inventory: Annotated[
        bool, typer.Option("--no-inventory", help="do not read the GPU inventory through NVML")
    ] = False,
    dcgm_exporter: Annotated[
        str | None,
        typer.Option(
            "--dcgm-exporter",
            help="relay this node's dcgm-exporter (e.g. http://localhost:9400/metrics) to NATS, "
            "for a control plane without Prometheus (AIOPS_DCGM_SOURCE=nodes)",
        ),
    ] = None,
    dcgm_interval: Annotated[
        float, typer.Option("--dcgm-interval", help="seconds between scrapes of --dcgm-exporter")
    ] = 10.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Ship this node's kernel log to NATS (gpu.kmsg.<cluster>.<node>) and publish its GPU inventory.

    Settings: NODE_NAME (else the host name), AIOPS_NATS_URL (comma-separated servers),
    AIOPS_CLUSTER, AIOPS_NODE_STATE_DIR (cursor and on-disk buffer), AIOPS_NODE_SPOOL_LINES."""
    from aiops.cli import _logging
    from events.node.agent import NodeAgent, NodeAgentConfig

    settings = Settings()
    _logging(verbose, settings.log_format, default="INFO")
    if source not in ("auto", "kmsg", "journal"):
        _fail(f"--source is auto, kmsg or journal, not {source!r}")
    if dcgm_exporter is not None and not dcgm_exporter.startswith(("http://", "https://")):
        _fail(f"--dcgm-exporter is an http(s) URL of the exporter's /metrics, not {dcgm_exporter!r}")
    if dcgm_interval <= 0:
        _fail("--dcgm-interval must be positive")
    if not settings.nats_url:
        _fail("the node agent needs NATS: set AIOPS_NATS_URL")
    config = NodeAgentConfig(
        nats_url=settings.nats_url,
        cluster=settings.cluster,
        node=settings.node_name or socket.gethostname(),
        state_dir=settings.node_state_dir,
        kmsg_path=kmsg,
        source=source,  # type: ignore[arg-type]
        spool_max_lines=settings.node_spool_lines,
        inventory=not no_inventory,
        dcgm_exporter=dcgm_exporter,
        dcgm_interval_s=dcgm_interval,
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await NodeAgent(config).run(stop)

    try:
        asyncio.run(main())
    except OSError as exc:
        _fail(str(exc))


def _fail(message: str) -> NoReturn:
    typer.echo(f"aiops node: {message}", err=True)
    raise typer.Exit(2)
