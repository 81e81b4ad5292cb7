"""The console's live feed: the fleet map and incident changes, to every open page (server-sent events).

One poller per console reads the backend's nodes once a second while anyone watches (and not at
all when nobody does) and publishes the map when it changed; incident changes arrive from NATS
(the subject every incident update is published on) and tell pages to refresh their lists. Each
page waits on a version number, so a slow page skips states rather than queueing them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from events import subjects
from mcp_server.backends.base import ClusterBackend
from mcp_server.tools.fleet_map import FleetMap, fleet_map_of

log = logging.getLogger(__name__)

POLL_S = 1.0
KEEPALIVE_S = 15.0


class FleetFeed:
    def __init__(self, backend: ClusterBackend, nc: NatsClient | None, stop: asyncio.Event) -> None:
        self._backend = backend
        self._nc = nc
        self._stop = stop
        self._tick = asyncio.Event()  # set (and replaced) on every change
        self.map: FleetMap | None = None
        self.map_version = 0
        self.layout_version = 0
        self.incidents_version = 0
        self._watchers = 0
        self._poller: asyncio.Task[None] | None = None

    async def refresh(self) -> None:
        """Read the fleet now; publish when anything changed."""
        fresh = await fleet_map_of(self._backend)
        if self.map is None or fresh != self.map:
            if self.map is None or fresh.nodes != self.map.nodes:
                self.layout_version += 1
            self.map = fresh
            self.map_version += 1
            self._notify()

    def _notify(self) -> None:
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    async def _poll(self) -> None:
        sub = None
        if self._nc is not None:
            sub = await self._nc.subscribe(subjects.incidents_all(), cb=self._on_incident)
        try:
            while not self._stop.is_set() and self._watchers:
                try:
                    await self.refresh()
                except Exception:  # the backend failed this once: keep the pages, try again
                    log.exception("console: reading the fleet failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), POLL_S)
        finally:
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            self._poller = None

    async def _on_incident(self, _: Msg) -> None:
        self.incidents_version += 1
        self._notify()

    async def events(self) -> AsyncIterator[str]:
        """Server-sent events for one page until the platform stops: ``map`` (layout and states), ``states`` (the states alone, when the layout holds),
        ``incidents`` (something changed: refresh the lists), and comments to keep proxies open."""
        self._watchers += 1
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll())
        # A first ``incidents`` at once: whatever changed between rendering the page and this
        # connection is not lost.
        seen_map, seen_layout, seen_incidents = 0, 0, -1
        stop = asyncio.create_task(self._stop.wait())
        try:
            if self.map is None:
                await self.refresh()
            while not self._stop.is_set():
                if self.map is not None and self.map_version != seen_map:
                    seen_map = self.map_version
                    if self.layout_version != seen_layout:
                        seen_layout = self.layout_version
                        yield f"event: map\ndata: {self.map.model_dump_json()}\n\n"
                    else:  # the layout holds: the states alone (16 KB at 16,384 GPUs)
                        yield f"event: states\ndata: {json.dumps({'states': self.map.states})}\n\n"
                if self.incidents_version != seen_incidents:
                    seen_incidents = self.incidents_version
                    yield f"event: incidents\ndata: {json.dumps(seen_incidents)}\n\n"
                if self.map_version != seen_map or self.incidents_version != seen_incidents:
                    continue
                waiter = asyncio.create_task(self._tick.wait())
                done, _ = await asyncio.wait(
                    {waiter, stop}, timeout=KEEPALIVE_S, return_when=asyncio.FIRST_COMPLETED
                )
                if waiter not in done:
                    waiter.cancel()
                if not done:
                    yield ": keep-alive\n\n"
        finally:
            stop.cancel()
            self._watchers -= 1
