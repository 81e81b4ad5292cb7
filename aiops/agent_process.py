"""``aiops agent``: the triage agent as a process of its own.

It holds no cluster credentials: it consumes ``GPU_EVENTS`` from NATS, keeps incidents and runbook
runs in NATS KV, and acts only through the MCP endpoint of a running platform (``aiops up
--no-agent``) with its own bearer token — exactly as a person's MCP client does. Killing it loses
nothing: the fleet, NATS and the MCP server keep running; started again, it resumes every unfinished
incident from its persisted runs, and the idempotency keys of its steps keep it from acting twice.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from agents.repairs import RepairWorker
from aiops.build import build_agent, freeze_startup_objects
from aiops.observability import start_observability
from aiops.settings import Settings
from contracts.client import McpToolClient
from events import subjects
from events.connection import connect
from events.documents import KvDocuments
from events.liveness import Liveness
from events.repairs import Repair
from events.streams import JetStreamLayout, ensure_jetstream
from events.supervise import supervised
from runbooks.state import KvRunStore, RunStore

log = logging.getLogger(__name__)

Wrap = Callable[[RunStore], RunStore]
WrapTools = Callable[[McpToolClient], McpToolClient]


async def run_agent(
    settings: Settings,
    *,
    mcp_url: str,
    token: str,
    stop: asyncio.Event,
    ready: Callable[[], None] | None = None,
    wrap_runs: Wrap | None = None,
    wrap_tools: WrapTools | None = None,
) -> None:
    """Run the agent until ``stop``. ``wrap_runs`` / ``wrap_tools`` wrap its two I/O seams (the
    run store, the MCP client): fault-injection tests kill the process at a chosen step with them."""
    if not settings.nats_url:
        raise ValueError("the agent needs the platform's NATS: set AIOPS_NATS_URL (aiops up prints it)")
    async with AsyncExitStack() as stack:
        nc = await connect(settings.nats_url, name=f"aiops-agent {settings.agent_id}")
        # Close, not drain: by then every incident and run is persisted, and an unacknowledged event
        # is redelivered to the next agent anyway (a drain can wait on a stopped pull subscription).
        stack.push_async_callback(nc.close)
        js = nc.jetstream()
        await ensure_jetstream(js, JetStreamLayout(replicas=settings.js_replicas))
        http = await stack.enter_async_context(
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=120)
        )
        client = await stack.enter_async_context(Client(streamable_http_client(mcp_url, http_client=http)))
        tools = McpToolClient(client)
        if wrap_tools is not None:
            tools = wrap_tools(tools)
        runs: RunStore = await KvRunStore.open(js)
        if wrap_runs is not None:
            runs = wrap_runs(runs)
        agent = await build_agent(settings, js=js, tools=tools, runs=runs, stack=stack)
        # Before consuming: re-learn the open incidents first, so an event redelivered after a crash
        # (or a hang its hardware incident explains) joins them instead of opening another.
        resumed = await agent.resume()
        liveness = Liveness()
        await agent.start(liveness=liveness)
        stack.push_async_callback(agent.drain)
        stack.push_async_callback(agent.stop)  # first on the way out: no new events
        tasks: list[asyncio.Task[object]] = []
        await start_observability(
            nc,
            js,
            settings.cluster,
            stack=stack,
            spawn=lambda coro: tasks.append(asyncio.ensure_future(coro)),
            stop=stop,
            sources={"agent": lambda: (agent.events_seen, 0, agent.dead_lettered)},
            sample=False,
        )
        if settings.agent_metrics_port is not None:
            # The agent plans: its planner latency and Claude spend are counted here, not in the platform.
            from prometheus_client import start_http_server

            server, thread = start_http_server(settings.agent_metrics_port, addr=settings.http_host)
            stack.callback(thread.join, 5)
            stack.callback(server.shutdown)
        name = "watch approvals and breaker"
        watch = asyncio.create_task(
            supervised(name, lambda: agent.watch_safety(stop, liveness), stop, liveness=liveness), name=name
        )
        # Deferred repairs (agents/repairs.py): claimed compare-and-set, so any number of replicas.
        repairs = RepairWorker(
            store=agent.store,
            docs=KvDocuments(await js.key_value(subjects.BUCKET_REPAIRS), Repair),
            tools=tools,
            engine=agent.engine,
            owner=f"{settings.agent_id}/{uuid.uuid4().hex[:8]}",  # replicas may share an agent id
        )
        tasks.append(
            asyncio.ensure_future(
                supervised(
                    "deferred repairs",
                    lambda: repairs.run(stop, probe=liveness.probe("deferred repairs")),
                    stop,
                    liveness=liveness,
                )
            )
        )
        log.info("agent %s up against %s; resumed %d incidents", settings.agent_id, mcp_url, resumed)
        freeze_startup_objects()
        if ready is not None:
            ready()
        await stop.wait()
        await watch
        for task in tasks:
            await task
