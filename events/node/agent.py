"""``aiops node``: the node agent, one per GPU node (a DaemonSet, or a systemd unit).

Two loops around the spool (events/node/spool.py):

- the reader takes records from ``/dev/kmsg`` (or a file in its format, or journald) and spools
  every record after the persisted cursor, in order;
- the shipper publishes the spool's oldest entries to ``gpu.kmsg.<cluster>.<node>`` with
  ``Nats-Msg-Id`` = ``<boot id>:<seq>`` and marks them shipped once JetStream has acknowledged them.
  While NATS is unreachable it retries with backoff and the spool holds the lines (bounded; the
  lines it cannot hold are counted as dropped and reported).

At start, and every ``status_interval_s``, the node's GPU inventory (NVML) and the agent's counts
go to the ``gpu_inventory`` bucket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import nats
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from events.inventory import AgentCounts, NodeInventory, inventory_bucket, put_inventory
from events.kmsg_shipper import publish_kmsg_lines
from events.node.dcgm import DcgmRelay
from events.node.kmsg_source import JournalSource, KernelSource, KmsgDevice, KmsgFile, is_device
from events.node.nvml import read_gpus
from events.node.spool import Spool
from events.streams import ensure_jetstream

log = logging.getLogger(__name__)

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")

SourceKind = Literal["auto", "kmsg", "journal"]


@dataclass
class NodeAgentConfig:
    nats_url: str
    cluster: str
    node: str
    state_dir: Path
    kmsg_path: Path = Path("/dev/kmsg")
    source: SourceKind = "auto"
    boot_id_path: Path = BOOT_ID
    spool_max_lines: int = 100_000
    batch: int = 500
    status_interval_s: float = 30.0
    inventory: bool = True
    journalctl: str = "journalctl"
    dcgm_exporter: str | None = None
    """The node's dcgm-exporter ``/metrics`` URL to relay to NATS (fleets without Prometheus)."""
    dcgm_interval_s: float = 10.0


@dataclass
class NodeAgent:
    config: NodeAgentConfig
    shipped: int = 0
    duplicates: int = 0
    """Lines JetStream already had (a batch re-sent after a failure): stored once."""
    publish_failures: int = 0
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    spool: Spool = field(init=False)
    source: KernelSource = field(init=False)
    _spooled: asyncio.Event = field(default_factory=asyncio.Event)
    _nc: NatsClient | None = None
    _js: JetStreamContext | None = None
    dcgm: DcgmRelay | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        c = self.config
        self.spool = Spool(c.state_dir, max_lines=c.spool_max_lines)
        if c.dcgm_exporter:
            self.dcgm = DcgmRelay(
                c.dcgm_exporter, cluster=c.cluster, node=c.node, interval_s=c.dcgm_interval_s
            )

    async def run(self, stop: asyncio.Event) -> None:
        c = self.config
        try:
            self.spool.start_boot(c.boot_id_path.read_text().strip())
            self.source = await self._open_source()
            log.info("node agent %s/%s reading %s", c.cluster, c.node, self.source.where)
            reader = asyncio.create_task(self._read(stop), name="kmsg reader")
            tasks = [reader]
            if self.dcgm is not None:
                log.info("relaying the dcgm-exporter at %s to %s", self.dcgm.url, self.dcgm.subject)
                tasks.append(asyncio.create_task(self.dcgm.run(lambda: self._js, stop), name="dcgm relay"))
            try:
                await self._ship(stop)
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                await self.source.close()
        finally:
            self.spool.close()
            if self._nc is not None:
                with contextlib.suppress(Exception):
                    await self._nc.close()

    async def _open_source(self) -> KernelSource:
        c = self.config
        if c.source == "journal":
            return await JournalSource.start(
                after_cursor=self.spool.cursor.journal_cursor, journalctl=c.journalctl
            )
        try:
            if is_device(c.kmsg_path):
                return KmsgDevice(c.kmsg_path)
            return KmsgFile(c.kmsg_path)
        except OSError as exc:
            if c.source == "kmsg":
                raise
            log.warning("cannot read %s (%s): falling back to journalctl -k", c.kmsg_path, exc)
            return await JournalSource.start(
                after_cursor=self.spool.cursor.journal_cursor, journalctl=c.journalctl
            )

    async def _read(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            records = self.source.read_available(self.config.batch)
            if records:
                if self.spool.append(records, gaps_are_losses=self.source.gaps_are_losses):
                    self._spooled.set()
                continue
            await self.source.wait(0.5)

    async def _ship(self, stop: asyncio.Event) -> None:
        c = self.config
        backoff = 0.1
        next_status = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                if self._nc is None:
                    self._nc = await self._connect()
                    self._js = self._nc.jetstream()
                    self.connected.set()
                if loop.time() >= next_status:
                    await self.report()
                    next_status = loop.time() + c.status_interval_s
                entries = self.spool.peek(c.batch)
                if not entries:
                    if stop.is_set():
                        return
                    self._spooled.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(_first(self._spooled, stop), timeout=1.0)
                    continue
                lines = [(c.node, e.line, e.msg_id) for e in entries]
                assert self._js is not None
                new = await publish_kmsg_lines(self._js, c.cluster, lines)
                self.spool.mark_shipped(entries)
                self.shipped += new
                self.duplicates += len(entries) - new
                backoff = 0.1
            except (TimeoutError, nats.errors.Error, nats.js.errors.Error, OSError) as exc:
                self.publish_failures += 1
                if stop.is_set() and self._nc is None:
                    return  # never connected: the spool keeps the lines for the next start
                log.warning("shipping kernel log lines failed (%s); retrying in %.1fs", exc, backoff)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=backoff)
                if stop.is_set():
                    return  # the spool keeps the rest for the next start
                backoff = min(backoff * 2, 5.0)

    async def _connect(self) -> NatsClient:
        c = self.config

        async def quiet(exc: Exception) -> None:  # the shipper logs what it cannot ship
            log.debug("NATS: %s", exc)

        # nats-py's first connect retries a refused server on its own, forever: bound it, so the
        # shipper's own backoff (and a stop) stays in charge.
        nc = await asyncio.wait_for(
            nats.connect(
                c.nats_url.split(","),
                name=f"aiops-node {c.node}",
                connect_timeout=2,
                allow_reconnect=False,
                reconnect_time_wait=0.5,
                error_cb=quiet,
            ),
            timeout=3,
        )
        # Once connected, never give up on a NATS that restarts: the spool holds the lines meanwhile.
        nc.options["allow_reconnect"] = True
        nc.options["max_reconnect_attempts"] = -1
        await ensure_jetstream(nc.jetstream())
        return nc

    def counts(self) -> AgentCounts:
        cur = self.spool.cursor
        relay = self.dcgm.counts if self.dcgm is not None else None
        return AgentCounts(
            shipped=self.shipped,
            dropped=cur.dropped,
            missed=cur.missed,
            pending=self.spool.pending,
            dcgm_relayed=relay.published if relay else 0,
            dcgm_scrape_failures=relay.scrape_failures if relay else 0,
        )

    async def report(self) -> None:
        """The node's inventory and the agent's counts into the ``gpu_inventory`` bucket."""
        if self._nc is None:
            return
        c = self.config
        gpus, driver, nvml = await asyncio.to_thread(read_gpus) if c.inventory else ([], None, "off")
        entry = NodeInventory(
            cluster=c.cluster,
            node=c.node,
            boot_id=self.spool.cursor.boot_id,
            driver=driver,
            gpus=gpus,
            nvml=nvml,
            agent=self.counts(),
        )
        assert self._js is not None
        await put_inventory(await inventory_bucket(self._js), entry)


async def _first(*events: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
