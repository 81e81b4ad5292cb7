"""Agent replicas for tests: several ``TriageAgent``s against one platform (one real nats-server),
each with a NATS connection of its own (closing it is the replica dying: its leases stop being
renewed) and its own MCP session on the platform's agent server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

from mcp import Client
from nats.aio.client import Client as NatsClient

from agents.ownership import Coordination
from agents.store import IncidentStore
from agents.triage import TriageAgent
from aiops.build import build_agent
from aiops.platform import Platform
from contracts.client import McpToolClient, ToolResult
from events import subjects
from events.backoff import Backoff, retry_transient
from events.connection import connect
from events.models import AuditRecord
from runbooks.state import KvRunStore
from tests.mcp_server.support import held

LEASE_TTL_S = 1.0


@dataclass
class Replica:
    agent: TriageAgent
    nc: NatsClient
    watching: asyncio.Task[None] | None = None

    def watch(self) -> None:
        """Its watch loop (approvals, breaker, waiting runs, takeovers), ticking fast."""
        self.watching = asyncio.create_task(self.agent.mitigation.watch(asyncio.Event(), every_s=0.05))

    async def die(self) -> None:
        """Gone without cleanup: no lease is released or renewed again (its tasks stay stuck)."""
        for task in (self.agent._renewer, self.watching, *self.agent._tasks.values()):
            if task is not None:
                task.cancel()
        await self.nc.close()


class Blocking(McpToolClient):
    """An MCP client whose ``tool`` call goes through, and then never returns (the replica is
    frozen right after the mutation, before it could record it)."""

    def __init__(self, inner: McpToolClient, tool: str) -> None:
        super().__init__(inner._client)
        self.tool = tool
        self.called = asyncio.Event()

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        result = await super().call(name, arguments)
        if name == self.tool:
            self.called.set()
            await asyncio.Event().wait()
        return result


@asynccontextmanager
async def replicas(
    platform: Platform, count: int, *, wrap: Callable[[int, McpToolClient], McpToolClient] | None = None
) -> AsyncIterator[list[Replica]]:
    async with AsyncExitStack() as stack:
        made: list[Replica] = []
        for n in range(count):
            made.append(
                await replica(platform, stack, f"replica-{n}", wrap=partial(wrap, n) if wrap else None)
            )
        try:
            yield made
        finally:
            for r in made:
                for task in [*r.agent._tasks.values(), *r.agent._held.values()]:
                    task.cancel()
                for extra in (r.agent._renewer, r.watching):
                    if extra is not None:
                        extra.cancel()


async def replica(
    platform: Platform,
    stack: AsyncExitStack,
    name: str,
    *,
    wrap: Callable[[McpToolClient], McpToolClient] | None = None,
) -> Replica:
    nc = await connect(platform.nats_url, name=name)
    stack.push_async_callback(nc.close)
    js = nc.jetstream()
    client = await stack.enter_async_context(held(Client(platform.agent_server)))
    tools = McpToolClient(client)
    agent = await build_agent(
        platform.settings,
        js=js,
        tools=wrap(tools) if wrap else tools,
        runs=await KvRunStore.open(js),
        stack=stack,
        clock=platform.twin.now,
        store=await IncidentStore.open(js),
        coordination=await Coordination.open(js, name=name, lease_ttl_s=LEASE_TTL_S),
    )
    return Replica(agent, nc)


async def events_of(platform: Platform, count: int) -> list[tuple[str, bytes]]:
    """The first ``count`` events on GPU_EVENTS (subject, bytes), as the agents' consumer gets them."""
    sub = await platform.js.pull_subscribe(subjects.events_all(), durable=None, stream=subjects.STREAM_EVENTS)
    found: list[tuple[str, bytes]] = []
    try:
        while len(found) < count:
            try:
                found += [(m.subject, m.data) for m in await sub.fetch(count - len(found), timeout=1)]
            except TimeoutError:
                continue
    finally:
        await sub.unsubscribe()
    return found


async def audit(platform: Platform) -> list[AuditRecord]:
    """Every audit record, read again while the cluster answers with a transient error (a stream
    whose leader is still being elected on a fresh cluster answers "service unavailable")."""
    return await retry_transient(partial(_read_audit, platform), attempts=40, backoff=Backoff(0.1, 1.0))


async def _read_audit(platform: Platform) -> list[AuditRecord]:
    info = await platform.js.stream_info(subjects.STREAM_AUDIT)
    if not info.state.messages:
        return []
    sub = await platform.js.pull_subscribe("gpu.audit.>", durable=None)
    records: list[AuditRecord] = []
    try:
        while len(records) < info.state.messages:
            batch = await sub.fetch(info.state.messages - len(records), timeout=5)
            records += [AuditRecord.model_validate(json.loads(m.data)) for m in batch]
    finally:
        await sub.unsubscribe()
    return records


async def executed(platform: Platform, tool: str) -> list[AuditRecord]:
    """Mutations the backend executed (not a dry run, not answered from an earlier call)."""
    return [r for r in await audit(platform) if r.tool == tool and r.ok and not r.dry_run and not r.replayed]


async def drain_all(agents: list[TriageAgent]) -> None:
    await asyncio.gather(*(a.drain() for a in agents))


Check = Callable[[], Awaitable[bool]]
