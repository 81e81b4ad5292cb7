"""GPU inventory: which GPU sits at which PCI bus id on which node, in the KV bucket ``gpu_inventory``.

Each node agent (``aiops node``) writes its node's entry (key ``<cluster>.<node>``) from NVML; the
kmsg service and the MCP tools resolve a kernel line's bus id to a GPU through it. The embedded
platform resolves through the fleet twin instead: both are a ``GpuResolver``. A bus id no inventory
knows resolves to ``None`` — the line is still an event, with its GPU unknown.

Only one writer per key (the node's own agent), so a plain ``put`` is safe; the entry also carries
the agent's shipping counts (lines shipped, dropped, missed), so drops are visible off the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Protocol

from nats.js import JetStreamContext
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue
from pydantic import BaseModel, Field, ValidationError

from events import subjects
from events.kmsg_parser import normalise_pci_bus_id
from events.models import utcnow

log = logging.getLogger(__name__)


class GpuResolver(Protocol):
    def gpu_index(self, node: str, pci_bus_id: str) -> int | None:
        """The index of the GPU at ``pci_bus_id`` on ``node``; None when unknown (never raises)."""
        ...


class InventoryGpu(BaseModel):
    index: int = Field(ge=0)
    uuid: str
    pci_bus_id: str
    """Normalised as the kmsg parser writes it: ``0000:3b:00.0``."""
    model: str


class AgentCounts(BaseModel):
    shipped: int = 0
    dropped: int = 0
    missed: int = 0
    pending: int = 0
    dcgm_relayed: int = 0
    """DCGM reports relayed (``aiops node --dcgm-exporter``)."""
    dcgm_scrape_failures: int = 0


class NodeInventory(BaseModel):
    cluster: str
    node: str
    boot_id: str = ""
    driver: str | None = None
    gpus: list[InventoryGpu] = Field(default_factory=list)
    nvml: str = "ok"
    """``ok``, or why NVML gave no inventory (no driver on this node)."""
    agent: AgentCounts = Field(default_factory=AgentCounts)
    updated: datetime = Field(default_factory=utcnow)


def inventory_key(cluster: str, node: str) -> str:
    return f"{subjects.token(cluster)}.{subjects.token(node)}"


async def inventory_bucket(js: JetStreamContext) -> KeyValue:
    return await js.key_value(subjects.BUCKET_GPU_INVENTORY)


async def put_inventory(kv: KeyValue, inventory: NodeInventory) -> None:
    await kv.put(inventory_key(inventory.cluster, inventory.node), inventory.model_dump_json().encode())


class KvGpuResolver:
    """Bus id -> GPU from the inventory bucket, kept current by a watcher (lookups never wait on I/O)."""

    def __init__(self, kv: KeyValue, cluster: str) -> None:
        self.kv = kv
        self.cluster = cluster
        self._by_node: dict[str, dict[str, int]] = {}
        self._gpus: dict[str, list[dict[str, object]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._seen = asyncio.Event()

    @classmethod
    async def open(cls, js: JetStreamContext, cluster: str) -> KvGpuResolver:
        resolver = cls(await inventory_bucket(js), cluster)
        await resolver.start()
        return resolver

    def gpu_index(self, node: str, pci_bus_id: str) -> int | None:
        wanted = normalise_pci_bus_id(pci_bus_id)
        if wanted is None:
            return None
        return self._by_node.get(node, {}).get(wanted)

    def gpus_of(self, node: str) -> list[dict[str, object]] | None:
        """The node's GPUs as ``{index, uuid, pci_bus_id, model}``; None when no agent reported."""
        return self._gpus.get(node)

    def learn(self, inventory: NodeInventory) -> None:
        if inventory.cluster != self.cluster:
            return
        self._gpus[inventory.node] = [g.model_dump() for g in inventory.gpus]
        self._by_node[inventory.node] = {
            bus: g.index for g in inventory.gpus if (bus := normalise_pci_bus_id(g.pci_bus_id))
        }

    async def start(self) -> None:
        watcher = await self.kv.watchall()
        ready = asyncio.Event()

        async def follow() -> None:
            try:
                async for entry in watcher:
                    if entry is None:  # caught up with the bucket
                        ready.set()
                        continue
                    if entry.operation in (KV_DEL, KV_PURGE) or not entry.value:
                        continue
                    try:
                        self.learn(NodeInventory.model_validate_json(entry.value))
                    except ValidationError as exc:
                        log.warning("ignoring a malformed inventory entry %s: %s", entry.key, exc)
                    self._seen.set()
            finally:
                ready.set()
                with contextlib.suppress(Exception):
                    await watcher.stop()  # type: ignore[no-untyped-call]

        self._task = asyncio.create_task(follow(), name="gpu inventory watcher")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready.wait(), 5)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
