"""Shared fixtures: a real nats-server per test (it starts in milliseconds), JetStream declared."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from aiops.nats_server import EmbeddedNats
from events.streams import ensure_jetstream


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    with EmbeddedNats(tmp_path / "nats") as server:
        yield server.url


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NatsClient]:
    client = await nats.connect(nats_url)
    yield client
    await client.drain()


@pytest.fixture
async def js(nc: NatsClient) -> JetStreamContext:
    ctx = nc.jetstream()
    await ensure_jetstream(ctx)
    return ctx
