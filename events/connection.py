"""Connecting to NATS: one server or a cluster, and a connection that never gives up.

``AIOPS_NATS_URL`` names one server or several, comma-separated
(``nats://10.0.0.1:4222,nats://10.0.0.2:4222``): nats-py takes them as a list (it refuses a
comma-separated string) and fails over between them. Long-running processes connect with
``connect()``: reconnection without a limit (nats-py's default gives up after 60 tries, about two
minutes, and then every loop of the process is dead), short waits between tries, and the
disconnections and reconnections logged.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import nats
from nats.aio.client import Client as NatsClient

log = logging.getLogger(__name__)

SCHEMES = ("nats", "tls", "ws", "wss")


def nats_servers(url: str) -> list[str]:
    """The servers of a NATS URL setting (one URL or several, comma-separated); raises
    ``ValueError`` with a readable reason on anything else."""
    servers = [part.strip() for part in url.split(",")]
    if not url.strip() or any(not s for s in servers):
        raise ValueError(f"a NATS URL or a comma-separated list of them expected, got {url!r}")
    for server in servers:
        parts = urlsplit(server if "://" in server else f"nats://{server}")
        if parts.scheme not in SCHEMES:
            raise ValueError(f"{server!r}: the scheme must be one of {', '.join(SCHEMES)}")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"{server!r}: the port is not a number from 0 to 65535") from None
        if not parts.hostname or (port is not None and port == 0):
            raise ValueError(f"{server!r}: a host and a port expected, e.g. nats://127.0.0.1:4222")
    return [s if "://" in s else f"nats://{s}" for s in servers]


async def connect(url: str | list[str], *, name: str, **options: Any) -> NatsClient:
    """Connect for a long-running process: reconnect forever, log the outages."""
    servers = nats_servers(url) if isinstance(url, str) else url

    async def disconnected() -> None:
        if not (nc.is_closed or nc.is_draining):  # closing on purpose is not an outage
            log.warning("%s: disconnected from NATS; reconnecting", name)

    async def reconnected() -> None:
        log.info("%s: reconnected to NATS at %s", name, nc.connected_url.netloc if nc.connected_url else "?")

    async def error(exc: Exception) -> None:
        # Each failed reconnection attempt reports here too: the disconnection was logged already.
        log.log(logging.DEBUG if nc.is_reconnecting else logging.WARNING, "%s: NATS error: %r", name, exc)

    settings: dict[str, Any] = {
        "name": name,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "connect_timeout": 2,
        "disconnected_cb": disconnected,
        "reconnected_cb": reconnected,
        "error_cb": error,
    }
    settings.update(options)
    nc: NatsClient = await nats.connect(servers=servers, **settings)
    return nc
