"""The protocol's live features beyond tools, resources and prompts: completions, logging levels and
resource subscriptions.

- **Completions** (``completion/complete``): prompt and resource-template arguments complete from
  the live fleet by the argument's name — ``node`` (node names), ``gpu``/``gpu_index`` (the GPU
  indices of the ``node`` already chosen), ``job``/``job_name``, ``incident_id`` (the newest
  incidents), ``runbook``, ``code`` (Xid codes the catalog knows). At most 100 values, as the spec
  caps them; ``total`` and ``has_more`` say when there were more.
- **Logging** (``logging/setLevel``): a client's wish is kept per principal (the HTTP transport is
  stateless, so a session has no memory of its own) and ``notify`` sends a tool call's log line to
  the client only at or above that level. Logging is a 2025-era capability the 2026-07-28
  revision deprecates; it is served on purpose for the clients that still ask for it.
- **Subscriptions**: ``resources/subscribe`` accepts the resources that change —
  ``incident://<id>``, ``incidents://open`` and ``fleet://summary`` — and refuses any other URI with
  invalid-params. :class:`ResourceFeed` turns each incident change the agents publish on NATS into
  ``resources/updated``: for 2026 clients through ``subscriptions/listen`` (the server's
  subscription bus; every replica hears every change, so any replica's stream is live), and for a
  session that subscribed the 2025 way (stdio) as a notification on that session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import warnings
import weakref
from typing import Any

from mcp.server import MCPServer
from mcp.server.context import ServerRequestContext
from mcp.server.session import ServerSession
from mcp.server.subscriptions import ResourceUpdated
from mcp.shared.exceptions import MCPError
from mcp.types import (
    INVALID_PARAMS,
    CompleteRequestParams,
    CompleteResult,
    Completion,
    EmptyResult,
    LoggingLevel,
    PromptReference,
    ResourceTemplateReference,
    SetLevelRequestParams,
    SubscribeRequestParams,
    UnsubscribeRequestParams,
)
from nats.aio.client import Client as NatsClient

from events import subjects
from mcp_server.deps import ServerDeps
from skills.catalog import load_catalog

log = logging.getLogger(__name__)

MAX_COMPLETIONS = 100  # the spec's cap per response
LEVELS: tuple[LoggingLevel, ...] = (
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
)
DEFAULT_LEVEL: LoggingLevel = "info"
FLEET_SUMMARY = "fleet://summary"
OPEN_INCIDENTS = "incidents://open"
INCIDENT_PREFIX = "incident://"


def subscribable(uri: str) -> bool:
    """The resources that change while a client looks at them."""
    return uri in (FLEET_SUMMARY, OPEN_INCIDENTS) or (
        uri.startswith(INCIDENT_PREFIX) and len(uri) > len(INCIDENT_PREFIX)
    )


def updated_uris(incident_id: str) -> list[str]:
    """What an incident's change makes stale."""
    return [f"{INCIDENT_PREFIX}{incident_id}", OPEN_INCIDENTS, FLEET_SUMMARY]


class Completer:
    """Values for a prompt or resource-template argument, from the live fleet, by argument name."""

    def __init__(self, deps: ServerDeps) -> None:
        self.deps = deps
        self._codes = [str(x.code) for x in load_catalog().xids]

    async def candidates(self, argument: str, chosen: dict[str, str]) -> list[str]:
        deps = self.deps
        match argument:
            case "node" | "node_name":
                return [n.name for n in await deps.backend.list_nodes()]
            case "gpu" | "gpu_index":
                node = chosen.get("node") or chosen.get("node_name")
                if not node:
                    return []
                try:
                    return [str(g.index) for g in (await deps.backend.get_node(node)).gpus]
                except Exception:  # an unknown node completes to nothing, not to an error
                    return []
            case "job" | "job_name":
                return [j.name for j in await deps.backend.list_jobs()]
            case "incident_id":
                return [i.id for i in await deps.incidents.list_incidents(None, 200)]
            case "runbook" | "runbook_name":
                return list(deps.runbooks.names())
            case "code" | "xid":
                return list(self._codes)
            case _:
                return []

    async def complete(self, argument: str, partial: str, chosen: dict[str, str]) -> Completion:
        found = [v for v in await self.candidates(argument, chosen) if v.startswith(partial)]
        return Completion(
            values=found[:MAX_COMPLETIONS], total=len(found), has_more=len(found) > MAX_COMPLETIONS
        )


class LogLevels:
    """The lowest level each principal asked to hear (``logging/setLevel``)."""

    def __init__(self) -> None:
        self._levels: dict[str, LoggingLevel] = {}

    def set(self, principal: str, level: LoggingLevel) -> None:
        self._levels[principal] = level

    def wants(self, principal: str, level: LoggingLevel) -> bool:
        floor = self._levels.get(principal, DEFAULT_LEVEL)
        return LEVELS.index(level) >= LEVELS.index(floor)


class LegacySubscribers:
    """Sessions that subscribed with ``resources/subscribe`` (a stateful transport, e.g. stdio)."""

    def __init__(self) -> None:
        self._by_uri: dict[str, weakref.WeakSet[ServerSession]] = {}

    def add(self, uri: str, session: ServerSession) -> None:
        self._by_uri.setdefault(uri, weakref.WeakSet()).add(session)

    def remove(self, uri: str, session: ServerSession) -> None:
        sessions = self._by_uri.get(uri)
        if sessions is not None:
            sessions.discard(session)

    def of(self, uri: str) -> list[ServerSession]:
        return list(self._by_uri.get(uri, ()))


class Live:
    """The protocol features of one server: installed once by :func:`install`."""

    def __init__(self, server: MCPServer[Any], deps: ServerDeps) -> None:
        self.server = server
        self.deps = deps
        self.completer = Completer(deps)
        self.levels = LogLevels()
        self.subscribers = LegacySubscribers()

    def _principal(self) -> str:
        return self.deps.identity().id

    async def on_complete(
        self, ctx: ServerRequestContext[Any], params: CompleteRequestParams
    ) -> CompleteResult:
        chosen = dict(params.context.arguments or {}) if params.context is not None else {}
        if not isinstance(params.ref, PromptReference | ResourceTemplateReference):
            raise MCPError(
                code=INVALID_PARAMS, message="completion needs a prompt or resource-template reference"
            )
        completion = await self.completer.complete(params.argument.name, params.argument.value, chosen)
        return CompleteResult(completion=completion)

    async def on_set_level(
        self, ctx: ServerRequestContext[Any], params: SetLevelRequestParams
    ) -> EmptyResult:
        self.levels.set(self._principal(), params.level)
        return EmptyResult()

    async def on_subscribe(
        self, ctx: ServerRequestContext[Any], params: SubscribeRequestParams
    ) -> EmptyResult:
        uri = str(params.uri)
        if not subscribable(uri):
            raise MCPError(
                code=INVALID_PARAMS,
                message=f"{uri!r} does not change; subscribe to incident://<id>, {OPEN_INCIDENTS} or {FLEET_SUMMARY}",
                data={"uri": uri},
            )
        self.subscribers.add(uri, ctx.session)
        return EmptyResult()

    async def on_unsubscribe(
        self, ctx: ServerRequestContext[Any], params: UnsubscribeRequestParams
    ) -> EmptyResult:
        self.subscribers.remove(str(params.uri), ctx.session)
        return EmptyResult()

    async def resource_changed(self, uri: str) -> None:
        """Tell every listener that ``uri`` changed: 2026 listen streams and 2025 subscribed sessions."""
        await self.server._subscriptions.publish(ResourceUpdated(uri=uri))
        for session in self.subscribers.of(uri):
            with contextlib.suppress(Exception):  # a session that went away is not an error
                await session.send_resource_updated(uri)

    async def notify(self, session: ServerSession | None, level: LoggingLevel, data: Any) -> None:
        """A log line for the caller, at ``level``, if they asked for that level (``logging/setLevel``)."""
        if session is None or not self.levels.wants(self._principal(), level):
            return
        with warnings.catch_warnings():
            # Deprecated by the 2026-07-28 revision; served on purpose to the clients that use it.
            warnings.simplefilter("ignore")
            with contextlib.suppress(Exception):
                await session.send_log_message(level=level, data=data, logger="gpu-aiops")


def install(server: MCPServer[Any], deps: ServerDeps) -> Live:
    """Serve completions, logging levels and resource subscriptions on ``server``."""
    live = Live(server, deps)
    lowlevel = server._lowlevel_server
    # Registered on the low-level server directly: its constructor's logging argument warns that the
    # capability is deprecated, and the warning is not news here.
    lowlevel.add_request_handler("completion/complete", CompleteRequestParams, live.on_complete)
    lowlevel.add_request_handler("logging/setLevel", SetLevelRequestParams, live.on_set_level)
    lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, live.on_subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, live.on_unsubscribe)
    return live


def _incident_id(msg: Any) -> str:
    """The incident's true id from the published record (the subject carries it subject-encoded)."""
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        found = json.loads(msg.data).get("id")
        if isinstance(found, str) and found:
            return found
    return str(msg.subject).rsplit(".", 1)[-1]


class ResourceFeed:
    """Incident changes published on NATS (``gpu.incidents.>``) → ``resources/updated``.

    Every MCP server replica runs one, so whichever replica holds a client's stream hears every
    change, whoever made it."""

    def __init__(self, live: Live, nc: NatsClient, subject: str | None = None) -> None:
        self.live = live
        self._nc = nc
        self.subject = subject or subjects.incidents_all()
        self.delivered = 0
        self._sub: Any = None

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(self.subject, cb=self._on_message)

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    async def _on_message(self, msg: Any) -> None:
        incident_id = _incident_id(msg)
        try:
            for uri in updated_uris(incident_id):
                await self.live.resource_changed(uri)
            self.delivered += 1
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("could not announce the change of incident %s", incident_id)
