"""The builders every entry point wires with: ``aiops up`` (aiops/platform.py), ``aiops agent``
(aiops/agent_process.py) and ``aiops mcp`` (aiops/standalone.py) each assemble their process from
these, never from a copy of their own.

- ``http_tokens``: the bearer tokens of the HTTP endpoint (a generated operator token when none is
  configured; a generated agent token when the agent runs as its own process).
- ``build_server``: an MCP server for one kind of caller (the people behind bearer tokens, or a
  fixed principal: the embedded agent, the stdio user, a chat user).
- ``build_agent``: the triage agent, its planner, runbook engine and incident store.
- ``serve_http``: the MCP server over streamable HTTP, with the platform's own ``/metrics`` beside it.
- ``held_client``: an in-process MCP client session of a server (the embedded agent's), held open
  until the exit stack closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import uvicorn
from mcp import Client
from mcp.server import MCPServer
from nats.js import JetStreamContext
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from agents.claude import ClaudeLimits
from agents.facts import Facts
from agents.ownership import Coordination
from agents.planner import Planner
from agents.planner_select import PlannerConfig, select_planner
from agents.store import IncidentStore
from agents.triage import TriageAgent
from aiops.settings import Settings
from contracts.client import McpToolClient
from events.incident import Incident, Plan
from events.metrics import PLANNER_SECONDS
from mcp_server.deps import ServerDeps
from mcp_server.gate.policy import Principal
from mcp_server.identity import BearerTokens, fixed_identity, load_tokens
from mcp_server.server import Lifespan
from mcp_server.server import build_server as _mcp_server
from runbooks.engine import RunbookEngine
from runbooks.library import RunbookLibrary
from runbooks.state import RunStore

log = logging.getLogger(__name__)


def planner_config(s: Settings) -> PlannerConfig:
    """Which planner decides and within which limits, from settings."""
    return PlannerConfig(
        mode=s.planner,
        api_key=s.anthropic_api_key,
        base_url=s.anthropic_base_url,
        model=s.claude_model,
        limits=ClaudeLimits(
            max_steps=s.claude_max_steps,
            max_wall_s=s.claude_max_wall_s,
            max_tokens=s.claude_max_tokens,
            max_cost_usd=s.claude_max_cost_usd,
        ),
        min_confidence=s.claude_min_confidence,
    )


def parse_tokens(raw: dict[str, str]) -> dict[str, Principal]:
    """``{"<token>": "<principal>:<role>"}`` from settings into principals."""
    out: dict[str, Principal] = {}
    for token, who in raw.items():
        principal, _, role = who.partition(":")
        kind = "agent" if role == "agent" else "person"
        out[token] = Principal.model_validate({"id": principal, "role": role or "viewer", "kind": kind})
    return out


def freeze_startup_objects() -> None:
    """For a process that runs one platform for its lifetime (``aiops up``, the agent, benchmarks):
    what start-up built (the fleet, the server's tool schemas, policies, catalogs) lives as long as
    the process, so take it out of the collector's sight; otherwise every full collection walks it
    again, and on a big fleet that is a pause of 100+ ms in the middle of a mitigation. Not for a
    process that starts platform after platform (the tests): frozen objects are never collected."""
    gc.collect()
    gc.freeze()


@dataclass
class HttpTokens:
    bearer: BearerTokens
    operator_token: str = ""
    """Made up for this run when no token is configured (role operator), to print once."""
    agent_token: str = ""
    """Made up for this run when the agent runs as its own process and no agent token is configured."""


def http_tokens(settings: Settings, *, agent_needs_token: bool = False) -> HttpTokens:
    tokens = load_tokens(settings.tokens, settings.tokens_file)
    operator = agent = ""
    if not tokens:
        operator = secrets.token_urlsafe(24)
        tokens = {operator: Principal(id="local-operator", role="operator")}
    if agent_needs_token and not any(p.role == "agent" for p in tokens.values()):
        agent = settings.agent_token or secrets.token_urlsafe(24)
        tokens[agent] = Principal(id=settings.agent_id, role="agent", kind="agent")
    return HttpTokens(BearerTokens(tokens), operator, agent)


def build_server(
    settings: Settings,
    deps: ServerDeps,
    *,
    principal: Principal | None = None,
    tokens: BearerTokens | None = None,
    lifespan: Lifespan | None = None,
) -> MCPServer:
    """The MCP server for a fixed ``principal`` (no confirmation: the agent, a chat user, stdio sets
    its own in ``deps``), or for the people behind bearer ``tokens`` (their confirmation and
    read-only settings come from ``settings``)."""
    if tokens is not None:
        people = dataclasses.replace(
            deps,
            identity=tokens.resolver(),
            confirm_destructive=settings.confirm_destructive,
            read_only=settings.read_only,
        )
        return _mcp_server(
            people,
            tokens=tokens,
            public_url=f"http://{settings.http_host}:{settings.http_port}/mcp",
            lifespan=lifespan,
        )
    if principal is None:
        raise ValueError("build_server needs a principal or bearer tokens")
    return _mcp_server(dataclasses.replace(deps, identity=fixed_identity(principal)), lifespan=lifespan)


def agent_principal(settings: Settings) -> Principal:
    return Principal(id=settings.agent_id, role="agent", kind="agent")


async def build_agent(
    settings: Settings,
    *,
    js: JetStreamContext,
    tools: McpToolClient,
    runs: RunStore,
    stack: AsyncExitStack,
    clock: Callable[[], datetime] | None = None,
    store: IncidentStore | None = None,
    coordination: Coordination | None = None,
) -> TriageAgent:
    """The triage agent with its planner (chosen from settings), runbook engine and incident store;
    it has learned the fabric. ``stack`` closes the planner's model client. Its correlation claims
    and leases are in NATS KV (shared with every other replica) unless ``coordination`` is given."""
    library = RunbookLibrary.load()
    choice = select_planner(planner_config(settings), tools=tools, library=library)
    if choice.client is not None:
        stack.push_async_callback(choice.client.close)
    log.info("planner: %s", choice.description)
    extra: dict[str, Any] = {} if clock is None else {"clock": clock}
    agent = TriageAgent(
        js=js,
        store=store or await IncidentStore.open(js),
        tools=tools,
        engine=RunbookEngine(tools, runs, library, **extra),
        planner=TimedPlanner(choice.planner),
        summarizer=choice.summarizer,
        dedupe_window_s=settings.dedupe_window_s,
        group_wait_s=settings.group_wait_s,
        coordination=coordination or await Coordination.open(js, name=settings.agent_id),
        **extra,
    )
    await agent.learn_fabric()
    return agent


class TimedPlanner:
    """A planner whose every plan is timed into ``aiops_planner_seconds``."""

    def __init__(self, inner: Planner) -> None:
        self.inner = inner
        self.name = inner.name

    async def plan(self, incident: Incident, facts: Facts) -> Plan:
        started = time.perf_counter()
        try:
            return await self.inner.plan(incident, facts)
        finally:
            PLANNER_SECONDS.labels(self.name).observe(time.perf_counter() - started)


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the caller owns Ctrl-C and stops in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _metrics(_: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


@asynccontextmanager
async def serve_http(
    server: MCPServer, host: str, port: int, *, mounts: Sequence[BaseRoute] = ()
) -> AsyncIterator[str]:
    """Serve ``server`` over streamable HTTP (stateless: any replica answers any request) with the
    platform's ``GET /metrics`` (Prometheus text) and ``mounts`` (the fleet console) on the same
    port until the block ends; yields the MCP URL."""
    server.custom_route("/metrics", methods=["GET"])(_metrics)
    app = server.streamable_http_app(stateless_http=True, host=host)
    app.router.routes.extend(mounts)
    http = _QuietServer(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(http.serve(), name="HTTP")
    try:
        while not http.started:
            if task.done():
                task.result()  # raises the bind error
                raise RuntimeError(f"the HTTP server on {host}:{port} stopped before it started")
            await asyncio.sleep(0.01)
        bound = http.servers[0].sockets[0].getsockname()[1]
        yield f"http://{host}:{bound}/mcp"
    finally:
        http.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=10)


async def held_client(server: MCPServer, stack: AsyncExitStack) -> Client:
    """An MCP session of ``server``, held open by a task of its own until ``stack`` closes: the MCP
    client's cancel scopes must be entered and left in one task, whichever task later closes it."""
    ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
    closed = asyncio.Event()

    async def hold() -> None:
        try:
            async with Client(server) as client:
                ready.set_result(client)
                await closed.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    task = asyncio.create_task(hold(), name="agent MCP session")

    async def close() -> None:
        closed.set()
        await task

    stack.push_async_callback(close)
    return await ready
