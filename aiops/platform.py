"""The composition root of ``aiops up`` (and ``aiops demo``): NATS, the cluster backend, the events
services, the triage agent and the MCP server in one process, wired with the builders of
aiops/build.py.

Two backends (``AIOPS_BACKEND`` / ``aiops up --backend``):

- ``twin`` (default): the embedded fleet twin feeds the kernel log and heartbeats, its exporter the
  DCGM detector; detectors and agent run on the twin's clock.
- ``kubernetes``: no twin. Node agents (``aiops node``) feed ``gpu.kmsg.*`` and the GPU inventory,
  training processes send heartbeats, DCGM comes from ``AIOPS_PROMETHEUS_URL``; detectors and agent
  run on the wall clock; observe-only unless turned off (aiops/safety.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from mcp.server import MCPServer
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from agents.preemptive import Preemption, PreemptiveRemoval
from agents.repairs import RepairWorker
from agents.store import IncidentStore
from agents.triage import TriageAgent
from aiops.backends import Backends, TwinGpuResolver, build_backends, fleet_spec
from aiops.build import (
    agent_principal,
    build_agent,
    build_server,
    freeze_startup_objects,
    held_client,
    http_tokens,
    parse_tokens,
    planner_config,
    serve_http,
)
from aiops.chat import Chat, serve_chat
from aiops.detection import Detection, checkpoint_times_of, start_detection, start_wall_detection
from aiops.fresh_twin import close_earlier_twins_incidents
from aiops.health import health_routes
from aiops.nats_server import EmbeddedNats
from aiops.observability import PlatformWatch, start_observability
from aiops.safety import observe_only, policy_limits
from aiops.settings import Settings
from chatops.notifier import IncidentNotifier
from chatops.sessions import PrincipalSessions
from chatops.slack import SlackEndpoint
from console.app import Console, build_console
from console.sessions import KvSessions
from contracts.client import McpToolClient
from events import subjects
from events.connection import connect
from events.documents import KvDocuments
from events.inventory import GpuResolver, KvGpuResolver
from events.kmsg_service import KmsgService
from events.kmsg_shipper import KmsgShipper
from events.liveness import Liveness
from events.models import utcnow
from events.repairs import Repair, RepairBook
from events.streams import JetStreamLayout, ensure_jetstream
from events.supervise import supervised
from fleet import FleetSpec, FleetTwin, run_clock
from mcp_server.deps import ServerDeps
from mcp_server.escalation import JetStreamDesk
from mcp_server.gate.approvals import KvApprovals
from mcp_server.gate.audit import JetStreamAudit
from mcp_server.gate.breaker import KvBreaker
from mcp_server.gate.idempotency import KvIdempotency
from mcp_server.gate.policy import PolicyGate
from mcp_server.identity import fixed_identity
from mcp_server.protocol import ResourceFeed
from runbooks.state import KvRunStore

log = logging.getLogger(__name__)

# Re-exported: entry points and benchmarks import them from here.
__all__ = ["Platform", "freeze_startup_objects", "parse_tokens", "planner_config"]


class NoTwinError(RuntimeError):
    """Asked for the fleet twin of a platform that runs against a real backend."""


@dataclass
class Platform:
    """Everything in one process. ``async with Platform(settings) as p:`` runs it.

    ``backends``: the cluster backend and telemetry to use instead of the ones ``settings`` ask for
    (tests hand in a Kubernetes backend on a loopback API)."""

    settings: Settings
    spec: FleetSpec | None = None
    serve_http: bool = True
    run_clock: bool = True
    data_dir: Path | None = None
    backends: Backends | None = None

    nats_url: str = ""
    http_url: str = ""
    operator_token: str = ""
    agent_token: str = ""
    nc: NatsClient = field(init=False)
    js: JetStreamContext = field(init=False)
    store: IncidentStore = field(init=False)
    agent: TriageAgent = field(init=False)
    repairs: RepairWorker = field(init=False)
    preemptive: PreemptiveRemoval | None = field(init=False, default=None)
    """Pre-emptive removal, when ``preemptive_removal`` is on (and the agent embedded)."""
    detection: Detection = field(init=False)
    kmsg: KmsgService = field(init=False)
    gpus: GpuResolver = field(init=False)
    watch: PlatformWatch = field(init=False)
    people_server: MCPServer = field(init=False)
    agent_server: MCPServer = field(init=False)
    _twin: FleetTwin | None = field(init=False, default=None)
    _shipper: KmsgShipper | None = field(init=False, default=None)
    _stack: AsyncExitStack = field(init=False, default_factory=AsyncExitStack)
    _stop: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[object]] = field(init=False, default_factory=list)
    sessions: PrincipalSessions = field(init=False)
    slack: SlackEndpoint | None = field(init=False, default=None)
    notifier: IncidentNotifier | None = field(init=False, default=None)
    liveness: Liveness = field(init=False, default_factory=Liveness)
    console: Console = field(init=False)
    _chat: Chat = field(init=False)

    @property
    def twin(self) -> FleetTwin:
        if self._twin is None:
            raise NoTwinError(
                f"this platform runs against the {self.settings.backend} backend: it has no twin"
            )
        return self._twin

    @property
    def breaker_generation(self) -> str:
        """Whose breaker state this platform keeps: a fresh twin starts with its own (closed, no
        take-outs), whatever an earlier twin run on the same data directory left; a real cluster
        keeps one state across restarts."""
        return f"twin-{self._twin.run_id}" if self._twin is not None else ""

    @property
    def has_twin(self) -> bool:
        return self._twin is not None

    @property
    def shipper(self) -> KmsgShipper:
        """The twin's kernel log into NATS (a real fleet's node agents ship their own)."""
        if self._shipper is None:
            raise NoTwinError("no kernel log shipper: node agents ship a real fleet's kernel logs")
        return self._shipper

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

    def _backends(self) -> Backends:
        s = self.settings
        if self.backends is not None:
            return self.backends
        twin = None
        if s.backend == "twin":
            twin = FleetTwin(self.spec or fleet_spec(s))
        # A backend that cannot be served raises here (BackendError): never a silent twin instead.
        return build_backends(s, twin=twin, always_sample=True)

    async def _start(self) -> None:
        s = self.settings
        backends = self._backends()
        self._stack.callback(backends.close)
        self._twin = backends.twin
        data_dir = self.data_dir or s.data_dir
        if s.nats_url:
            self.nats_url = s.nats_url
        else:
            embedded = self._stack.enter_context(EmbeddedNats(data_dir / "nats"))
            self.nats_url = embedded.url
        self.nc = await connect(self.nats_url, name="aiops")
        self._stack.push_async_callback(self.nc.drain)
        self.js = self.nc.jetstream()
        await ensure_jetstream(self.js, JetStreamLayout(replicas=s.js_replicas))
        cluster = backends.cluster.cluster
        clock = self._twin.now if self._twin is not None else None
        if self._twin is not None:
            self.gpus = TwinGpuResolver(self._twin)
        else:
            inventory = await KvGpuResolver.open(self.js, cluster)
            self._stack.push_async_callback(inventory.close)
            self.gpus = inventory
            from mcp_server.backends.kubernetes.backend import KubernetesBackend

            if isinstance(backends.cluster, KubernetesBackend):
                backends.cluster.inventory = inventory.gpus_of  # the MCP tools see NVML's GPUs too
        log.info(
            "backend %s (cluster %s)%s",
            backends.cluster.kind,
            cluster,
            "; observe-only: actions are planned and recorded, nothing changes" if observe_only(s) else "",
        )

        self.store = await IncidentStore.open(self.js)
        repair_docs = KvDocuments(await self.js.key_value(subjects.BUCKET_REPAIRS), Repair)
        if self._twin is not None and self.backends is None:  # a twin built just now: a fresh fleet
            await close_earlier_twins_incidents(self.store, self._twin.now())
        deps = ServerDeps(
            backend=backends.cluster,
            telemetry=backends.telemetry,
            identity=fixed_identity(agent_principal(s)),  # each server below sets its own caller
            runs=await KvRunStore.open(self.js, clock or utcnow),
            gate=PolicyGate.from_directory(),
            audit=JetStreamAudit(self.js),
            idempotency=await KvIdempotency.open(self.js),
            incidents=self.store,
            repairs=RepairBook(repair_docs),
            limits=policy_limits(s),
            approvals=await KvApprovals.open(self.js),
            breaker=await KvBreaker.open(self.js, self.breaker_generation),
            desk=JetStreamDesk(self.js),
            clock=clock or utcnow,
            checkpoint_times=await checkpoint_times_of(self.js),
        )
        self.agent_server = build_server(s, deps, principal=agent_principal(s))
        tokens = http_tokens(s, agent_needs_token=not s.embedded_agent)
        self.operator_token, self.agent_token = tokens.operator_token, tokens.agent_token
        self.people_server = build_server(s, deps, tokens=tokens.bearer)
        live = getattr(self.people_server, "live", None)
        if live is not None:
            # Incident changes on NATS -> resources/updated for clients watching incident://, fleet://.
            feed = ResourceFeed(live, self.nc)
            await feed.start()
            self._stack.push_async_callback(feed.stop)
        self._chat = serve_chat(s, deps, self.js, self.people_server, self._stack)
        self.sessions, self.slack = self._chat.sessions, self._chat.slack

        # The fleet console at /console on the HTTP port: same tokens, same tools (console/).
        self.console = build_console(
            backends.cluster,
            tokens.bearer,
            self.sessions,
            self.nc,
            self._stop,
            JetStreamAudit(self.js),
            login_sessions=await KvSessions.open(self.js),
            clock=clock or utcnow,
        )
        tools = McpToolClient(await held_client(self.agent_server, self._stack))
        self.agent = await build_agent(
            s, js=self.js, tools=tools, runs=deps.runs, stack=self._stack, clock=clock, store=self.store
        )
        # Deferred repairs (agents/repairs.py): the resets and reboots plans queued, run once idle.
        self.repairs = RepairWorker(
            store=self.store,
            docs=repair_docs,
            tools=tools,
            engine=self.agent.engine,
            owner=s.agent_id,
            clock=self.agent.clock,
        )
        self.kmsg = KmsgService(
            self.js, gpu_index=self.gpus.gpu_index, liveness=self.liveness, clock=clock or utcnow
        )
        await self.kmsg.start()
        self._stack.push_async_callback(self.kmsg.stop)
        if s.embedded_agent:
            await self.agent.start(liveness=self.liveness)
            name = "watch approvals and breaker"
            self._supervise(name, lambda: self.agent.watch_safety(self._stop, self.liveness))
            name = "deferred repairs"
            self._supervise(name, lambda: self.repairs.run(self._stop, probe=self.liveness.probe(name)))
            if s.preemptive_removal:
                preemptive = self.preemptive = PreemptiveRemoval(
                    tools,
                    KvDocuments(await self.js.key_value(subjects.BUCKET_PREEMPTIONS), Preemption),
                    self.store,
                    drain_after_s=s.preemptive_drain_after_s,
                    clock=self.agent.clock,
                )
                self._supervise("pre-emptive removal", lambda: preemptive.watch(self._stop), reports=False)
        self._stack.push_async_callback(self.agent.drain)
        self._stack.push_async_callback(self.agent.stop)  # first on the way out: no new events

        if self._twin is not None:
            self._start_twin_feeds(self._twin, backends)
            # DCGM, hang and throughput detectors on the twin's exporter and heartbeats (events/detectors).
            self.detection = await start_detection(
                nc=self.nc,
                js=self.js,
                twin=self._twin,
                settings=s,
                stack=self._stack,
                spawn=self._spawn,
                stop=self._stop,
                serve_http=self.serve_http,
                liveness=self.liveness,
            )
            if self.run_clock:
                self._spawn(run_clock(self._twin, s.speed, 0.05, self._stop))
        else:
            # Real training processes beat on NATS; DCGM from Prometheus; everything on the wall clock.
            self.detection = await start_wall_detection(
                nc=self.nc,
                js=self.js,
                cluster=cluster,
                settings=s,
                stack=self._stack,
                spawn=self._spawn,
                stop=self._stop,
            )
        await self._start_notifier()
        kmsg, detectors, agent = self.kmsg, self.detection.service, self.agent
        self.watch = await start_observability(
            self.nc,
            self.js,
            cluster,
            stack=self._stack,
            spawn=self._spawn,
            stop=self._stop,
            breaker_generation=self.breaker_generation,
            sources={
                "kmsg": lambda: (kmsg.lines_seen, kmsg.events_published, kmsg.dead_lettered),
                "detectors": lambda: (
                    detectors.beats_seen,
                    detectors.events_published,
                    detectors.beats_rejected,
                ),
                "agent": lambda: (agent.events_seen, 0, agent.dead_lettered),
            },
        )
        if self.serve_http:
            # /healthz and /readyz beside /mcp and /metrics, unauthenticated (they name loops and streams).
            layout = JetStreamLayout(replicas=s.js_replicas)
            for route in health_routes(self.nc, self.js, self.liveness, layout):
                self.people_server.custom_route(route.path, methods=["GET"])(route.endpoint)
            self.http_url = await self._stack.enter_async_context(
                serve_http(self.people_server, s.http_host, s.http_port, mounts=[self.console.mount()])
            )
        resumed = await self.agent.resume() if s.embedded_agent else 0
        if resumed:
            log.info("resumed %d unfinished incidents", resumed)

    def _start_twin_feeds(self, twin: FleetTwin, backends: Backends) -> None:
        """The twin's kernel log into ``gpu.kmsg.*`` and its telemetry history filling."""
        shipper = self._shipper = KmsgShipper(self.js, twin.name, liveness=self.liveness)
        self._stack.callback(twin.subscribe_kmsg(shipper.offer_line))
        self._supervise(shipper.name, lambda: shipper.run(self._stop))
        if self.run_clock:
            self._spawn(backends.run_sampler(self._stop))

    async def _start_notifier(self) -> None:
        notifier = self.notifier = await self._chat.notifier(self.js)
        if notifier is not None:
            self._supervise("chat notifier", lambda: notifier.run(self.nc, self._stop), reports=False)

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        self._tasks.append(asyncio.ensure_future(coro))

    def _supervise(
        self, name: str, run: Callable[[], Coroutine[Any, Any, object]], *, reports: bool = True
    ) -> None:
        """Run a long-running loop until the platform stops, restarted if it ever ends unasked."""
        self._spawn(supervised(name, run, self._stop, liveness=self.liveness, reports=reports))

    async def aclose(self) -> None:
        self._stop.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=10)
        await self._stack.aclose()
