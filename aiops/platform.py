"""The composition root: wires NATS, the fleet twin, the events service, the triage agent and the
MCP server into one running platform (``aiops up`` and ``aiops demo``)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import secrets
from collections.abc import Coroutine, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import nats
import uvicorn
from faststream.nats import NatsBroker
from mcp import Client
from mcp.server import MCPServer
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from slack_sdk.web.async_client import AsyncWebClient

from agents.claude import ClaudeLimits
from agents.planner_select import PlannerConfig, select_planner
from agents.store import IncidentStore
from agents.triage import TriageAgent
from aiops.detection import Detection, start_detection
from aiops.nats_server import EmbeddedNats
from aiops.safety import policy_limits
from aiops.settings import Settings
from chatops.notifier import IncidentNotifier
from chatops.sessions import PrincipalSessions
from chatops.slack import SlackEndpoint
from console.app import Console, build_console
from contracts.client import McpToolClient
from events import subjects
from events.kmsg_service import KmsgService
from events.kmsg_shipper import KmsgShipper
from events.streams import ensure_jetstream
from fleet import FleetSpec, FleetTwin, run_clock
from mcp_server.backends.twin.backend import TwinBackend
from mcp_server.backends.twin.telemetry import TwinTelemetry
from mcp_server.deps import ServerDeps
from mcp_server.escalation import JetStreamDesk
from mcp_server.gate.approvals import KvApprovals
from mcp_server.gate.audit import JetStreamAudit
from mcp_server.gate.breaker import KvBreaker
from mcp_server.gate.idempotency import KvIdempotency
from mcp_server.gate.policy import PolicyGate, Principal
from mcp_server.identity import BearerTokens, fixed_identity, load_tokens
from mcp_server.server import build_server
from runbooks.engine import RunbookEngine
from runbooks.library import RunbookLibrary
from runbooks.state import KvRunStore

log = logging.getLogger(__name__)


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the platform owns Ctrl-C and stops in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


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
class Platform:
    """Everything embedded in one process. ``async with Platform(settings) as p:`` runs it."""

    settings: Settings
    spec: FleetSpec | None = None
    serve_http: bool = True
    run_clock: bool = True
    data_dir: Path | None = None

    nats_url: str = ""
    http_url: str = ""
    operator_token: str = ""
    agent_token: str = ""
    twin: FleetTwin = field(init=False)
    nc: NatsClient = field(init=False)
    js: JetStreamContext = field(init=False)
    store: IncidentStore = field(init=False)
    agent: TriageAgent = field(init=False)
    detection: Detection = field(init=False)
    kmsg: KmsgService = field(init=False)
    shipper: KmsgShipper = field(init=False)
    people_server: MCPServer = field(init=False)
    telemetry: TwinTelemetry = field(init=False)
    agent_server: MCPServer = field(init=False)
    _stack: AsyncExitStack = field(init=False, default_factory=AsyncExitStack)
    _stop: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[object]] = field(init=False, default_factory=list)
    _http: uvicorn.Server | None = field(init=False, default=None)
    sessions: PrincipalSessions = field(init=False)
    slack: SlackEndpoint | None = field(init=False, default=None)
    notifier: IncidentNotifier | None = field(init=False, default=None)
    console: Console = field(init=False)
    _pending_notifier: tuple[AsyncWebClient, str] | None = field(init=False, default=None)

    async def __aenter__(self) -> Platform:
        try:
            await self._start()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _start(self) -> None:
        s = self.settings
        data_dir = self.data_dir or s.data_dir
        if s.nats_url:
            self.nats_url = s.nats_url
        else:
            embedded = self._stack.enter_context(EmbeddedNats(data_dir / "nats"))
            self.nats_url = embedded.url
        self.nc = await nats.connect(self.nats_url, name="aiops")
        self._stack.push_async_callback(self.nc.drain)
        self.js = self.nc.jetstream()
        await ensure_jetstream(self.js)

        self.twin = FleetTwin(
            self.spec or FleetSpec.small(seed=s.seed).model_copy(update={"cluster": s.cluster})
        )
        backend = TwinBackend(self.twin)
        gate = PolicyGate.from_directory()
        self.store = await IncidentStore.open(self.js)
        # The telemetry tools read the twin's counters and kernel log (mcp_server/backends/twin/telemetry.py).
        self.telemetry = TwinTelemetry(self.twin)
        self._stack.callback(self.telemetry.close)
        common = {
            "backend": backend,
            "telemetry": self.telemetry,
            "runs": await KvRunStore.open(self.js),
            "gate": gate,
            "audit": JetStreamAudit(self.js),
            "idempotency": await KvIdempotency.open(self.js),
            "incidents": self.store,
            "limits": policy_limits(s),
            "approvals": await KvApprovals.open(self.js),
            "breaker": await KvBreaker.open(self.js),
            "desk": JetStreamDesk(self.js),
        }
        agent_principal = Principal(id=s.agent_id, role="agent", kind="agent")
        self.agent_server = build_server(ServerDeps(identity=fixed_identity(agent_principal), **common))  # type: ignore[arg-type]
        tokens = load_tokens(s.tokens, s.tokens_file)
        if not tokens:
            # No tokens configured: one operator token for this run, printed for the person who started it.
            self.operator_token = secrets.token_urlsafe(24)
            tokens = {self.operator_token: Principal(id="local-operator", role="operator")}
        if not s.embedded_agent and not any(p.role == "agent" for p in tokens.values()):
            # The agent runs as its own process (`aiops agent`): it needs a token of its own.
            self.agent_token = secrets.token_urlsafe(24)
            tokens[self.agent_token] = Principal(id=s.agent_id, role="agent", kind="agent")
        bearer = BearerTokens(tokens)
        self.people_server = build_server(
            ServerDeps(
                identity=bearer.resolver(),
                confirm_destructive=s.confirm_destructive,
                read_only=s.read_only,
                **common,  # type: ignore[arg-type]
            ),
            tokens=bearer,
            public_url=f"http://{s.http_host}:{s.http_port}/mcp",
        )

        self._serve_chat(common)
        # The fleet console at /console on the HTTP port: same tokens, same tools (console/).
        self.console = build_console(
            backend, bearer, self.sessions, self.nc, self._stop, JetStreamAudit(self.js)
        )
        tools = McpToolClient(await self._agent_client())
        library = RunbookLibrary.load()
        engine = RunbookEngine(tools, await KvRunStore.open(self.js), library)
        choice = select_planner(planner_config(s), tools=tools, library=library)
        if choice.client is not None:
            self._stack.push_async_callback(choice.client.close)
        log.info("planner: %s", choice.description)
        self.agent = TriageAgent(
            js=self.js,
            store=self.store,
            tools=tools,
            engine=engine,
            planner=choice.planner,
            summarizer=choice.summarizer,
            clock=self.twin.now,
            dedupe_window_s=s.dedupe_window_s,
            group_wait_s=s.group_wait_s,
        )
        await self.agent.learn_fabric()
        # FastStream logs two lines per message at INFO (library notes); our handlers log their own errors.
        broker = NatsBroker(self.nats_url, logger=None)
        self.kmsg = KmsgService(broker, gpu_index=self.twin.gpu_index)
        if s.embedded_agent:
            self.agent.subscribe(broker)
            self._spawn(self.agent.watch_safety(self._stop))
        await broker.start()
        self._stack.push_async_callback(broker.stop)
        self._stack.push_async_callback(self.agent.drain)
        self._stack.push_async_callback(self.agent.stop)  # first on the way out: no new events

        self.shipper = KmsgShipper(self.js, self.twin.name)
        unsubscribe = self.twin.subscribe_kmsg(self.shipper.offer)
        self._stack.callback(unsubscribe)
        self._spawn(self.shipper.run(self._stop))
        # DCGM, hang and throughput detectors on the twin's exporter and heartbeats (events/detectors).
        self.detection = await start_detection(
            nc=self.nc,
            js=self.js,
            twin=self.twin,
            settings=s,
            stack=self._stack,
            spawn=self._spawn,
            stop=self._stop,
            serve_http=self.serve_http,
        )
        if self.run_clock:
            self._spawn(run_clock(self.twin, s.speed, 0.05, self._stop))
            self._spawn(self.telemetry.run(self._stop))
        await self._start_notifier()
        if self.serve_http:
            await self._serve_http()
        resumed = await self.agent.resume() if s.embedded_agent else 0
        if resumed:
            log.info("resumed %d unfinished incidents", resumed)

    def _serve_chat(self, common: dict[str, Any]) -> None:
        """/gpu slash commands on the HTTP port (when a Slack signing secret is configured) and
        incident notifications to a channel (when a bot token and channel are)."""
        s = self.settings
        self.sessions = PrincipalSessions(
            lambda p: build_server(ServerDeps(identity=fixed_identity(p), **common))
        )
        if s.slack_signing_secret:
            self.slack = SlackEndpoint(
                signing_secret=s.slack_signing_secret,
                users=parse_tokens(s.slack_users),
                sessions=self.sessions.session,
            )
            for route in self.slack.routes():
                self.people_server.custom_route(route.path, methods=["POST"])(route.endpoint)
            self._stack.push_async_callback(self.slack.drain)
        if s.slack_bot_token and s.slack_channel:
            web = AsyncWebClient(token=s.slack_bot_token, base_url=s.slack_api_url)
            self._pending_notifier = (web, s.slack_channel)

    async def _start_notifier(self) -> None:
        if self._pending_notifier is None:
            return
        web, channel = self._pending_notifier
        kv = await self.js.key_value(subjects.BUCKET_NOTIFICATIONS)
        self.notifier = IncidentNotifier(web, channel, kv)
        self._spawn(self.notifier.run(self.nc, self._stop))

    async def _serve_http(self) -> None:
        s = self.settings
        app = self.people_server.streamable_http_app(stateless_http=True, host=s.http_host)
        app.router.routes.append(self.console.mount())
        config = uvicorn.Config(app, host=s.http_host, port=s.http_port, log_level="warning", lifespan="on")
        self._http = _QuietServer(config)
        self._spawn(self._http.serve())
        while not self._http.started:
            if self._tasks[-1].done():
                self._tasks[-1].result()  # raises the bind error
            await asyncio.sleep(0.01)
        port = self._http.servers[0].sockets[0].getsockname()[1]
        self.http_url = f"http://{s.http_host}:{port}/mcp"

    async def _agent_client(self) -> Client:
        """The agent's MCP session, held open by a task of its own: the MCP client's cancel scopes
        must be entered and left in one task, whichever task later closes the platform."""
        ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
        closed = asyncio.Event()

        async def hold() -> None:
            try:
                async with Client(self.agent_server) as client:
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

        self._stack.push_async_callback(close)
        return await ready

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        self._tasks.append(asyncio.ensure_future(coro))

    async def aclose(self) -> None:
        self._stop.set()
        if self._http is not None:
            self._http.should_exit = True
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=10)
        await self._stack.aclose()
