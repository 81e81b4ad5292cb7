"""Serve the twin's dcgm-exporter endpoint on a free loopback port for a test."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import uvicorn

from fleet import FleetTwin
from fleet.exporter import exporter_app


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serving(twin: FleetTwin) -> AsyncIterator[str]:
    """The base URL (``http://127.0.0.1:<port>``) while the exporter runs."""
    server = _Server(
        uvicorn.Config(exporter_app(twin), host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())

    async def wait_started() -> None:
        while not server.started:  # uvicorn exposes no started event
            if task.done():
                task.result()
            await asyncio.sleep(0.01)

    await asyncio.wait_for(wait_started(), timeout=10)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
