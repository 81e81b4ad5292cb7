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


@pytest.fixture(autouse=True)
def no_anthropic_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach Anthropic's API, whatever the developer's shell or .env holds (an empty
    variable beats .env): Claude tests point the SDK at tests/agents/claude/'s loopback server."""
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"):
        monkeypatch.setenv(name, "")
        monkeypatch.setenv(f"AIOPS_{name}", "")


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
