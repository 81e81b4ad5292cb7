"""The console's routes, mounted at ``/console`` on the platform's HTTP port (next to ``/mcp``).

Reads and actions go through the MCP tools as the logged-in person (``PrincipalSessions``), so the
policy gate, four eyes and the audit trail treat a click exactly like a tool call from any client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route

from chatops.sessions import PrincipalSessions
from console import views
from console.auth import (
    LOGIN_CSRF_COOKIE,
    SECURITY_HEADERS,
    ConsoleAuth,
    Refused,
    Session,
    check_csrf,
    check_login_csrf,
    check_origin,
    login_csrf,
)
from console.feed import FleetFeed
from console.sessions import MemorySessions, SessionStore
from contracts.client import ToolResult
from events.models import AuditRecord, utcnow
from mcp_server import ui
from mcp_server.backends.base import ClusterBackend
from mcp_server.gate.audit import AuditSink
from mcp_server.gate.policy import Principal
from mcp_server.identity import BearerTokens

log = logging.getLogger(__name__)

RECENT_INCIDENTS = 30
STATIC_TYPES = {
    "heatmap.js": "text/javascript; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}


def _static(name: str) -> bytes:
    if name == "heatmap.js":  # one drawing for the console and the MCP App
        return ui.asset(name).encode()
    return resources.files("console").joinpath("static", name).read_bytes()


class ToolRefused(Exception):
    def __init__(self, tool: str, result: ToolResult) -> None:
        super().__init__(result.text)
        self.tool = tool
        self.text = (result.text or f"{tool} failed").removeprefix(f"Error executing tool {tool}: ")


class Console:
    def __init__(
        self,
        backend: ClusterBackend,
        tokens: BearerTokens,
        sessions: PrincipalSessions,
        feed: FleetFeed,
        audit: AuditSink | None = None,
        *,
        login_sessions: SessionStore | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """``login_sessions``: where console sessions live (NATS KV on the platform, shared by every
        replica; in this process without one). ``clock``: the backend's, for the audit records."""
        self.backend = backend
        self.audit = audit
        self.clock = clock
        self.auth = ConsoleAuth(tokens, login_sessions or MemorySessions())
        self.sessions = sessions
        self.feed = feed
        self._assets = {name: _static(name) for name in STATIC_TYPES}

    def mount(self, path: str = "/console") -> Mount:
        return Mount(path, app=Starlette(routes=self.routes()))

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.home, methods=["GET"]),
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/events", self.events, methods=["GET"]),
            Route("/fragments/{name}", self.fragment, methods=["GET"]),
            Route("/incidents/{incident_id}", self.incident, methods=["GET"]),
            Route("/approvals/{approval_id}/{verdict}", self.decide, methods=["POST"]),
            Route("/breaker/reset", self.reset_breaker, methods=["POST"]),
            Route("/static/{name}", self.static, methods=["GET"]),
        ]

    # --- plumbing -------------------------------------------------------------------------------

    @staticmethod
    def _html(body: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)

    async def _refused(self, refused: Refused, request: Request) -> Response:
        if refused.status == 401 and request.method == "GET":
            return RedirectResponse("/console/login", status_code=303, headers=SECURITY_HEADERS)
        return await self._error(refused.status, refused.message, request)

    async def _error(self, status: int, message: str, request: Request) -> HTMLResponse:
        return self._html(views.error_page(status, message, await self._shown(request)), status)

    async def _shown(self, request: Request) -> Session | None:
        """The session of a full page about to be shown, its waiting messages taken for it."""
        session = await self.auth.session(request)
        if session is not None:
            session.flash = await self.auth.sessions.take_flash(session)
        return session

    async def _call(self, session: Session, tool: str, arguments: dict[str, Any]) -> Any:
        async with self.sessions.session(session.principal) as tools:
            result = await tools.call(tool, arguments)
        if not result.ok:
            raise ToolRefused(tool, result)
        return result.structured

    async def _acting(self, request: Request) -> tuple[Session, dict[str, str]]:
        """The checks of every state-changing request: same origin, a session, its CSRF token."""
        check_origin(request)
        session = await self.auth.require(request)
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        check_csrf(session, form.get("csrf"))
        return session, form

    # --- pages ----------------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        csrf = login_csrf(request)
        response = self._html(views.login_page(csrf))
        response.set_cookie(
            LOGIN_CSRF_COOKIE,
            csrf,
            path="/console/login",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def login(self, request: Request) -> Response:
        form = await request.form()
        token, csrf = form.get("token"), form.get("csrf")
        try:
            check_origin(request)
            check_login_csrf(request, csrf if isinstance(csrf, str) else None)
            response = RedirectResponse("/console/", status_code=303, headers=SECURITY_HEADERS)
            principal = await self.auth.login(token if isinstance(token, str) else "", response, request)
        except Refused as refused:
            await self._audit_login(request, refused.principal, refused.message, allowed=False)
            fresh = login_csrf(request)
            page = self._html(views.login_page(fresh, f"{refused.status}: {refused.message}"), refused.status)
            page.set_cookie(
                LOGIN_CSRF_COOKIE,
                fresh,
                path="/console/login",
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
            return page
        log.info("console: %s (%s) logged in", principal.id, principal.role)
        await self._audit_login(request, principal, "session started")
        return response

    async def _audit_login(
        self, request: Request, principal: Principal | None, result: str, *, allowed: bool = True
    ) -> None:
        """Logins land in the audit trail too: who opened a console session, and refused attempts."""
        if self.audit is None:
            return
        client = request.client.host if request.client else "unknown"
        await self.audit.record(
            AuditRecord(
                time=self.clock(),
                cluster=self.backend.cluster,
                principal=principal.id if principal else "unknown",
                role=principal.role if principal else "none",
                tool="console_login",
                arguments={"client": client},
                decision="allow" if allowed else "deny",
                reasons=[] if allowed else [result],
                ok=allowed,
                result=result,
            )
        )

    async def logout(self, request: Request) -> Response:
        try:
            await self._acting(request)
        except Refused as refused:
            return await self._refused(refused, request)
        response = RedirectResponse("/console/login", status_code=303, headers=SECURITY_HEADERS)
        await self.auth.logout(request, response)
        return response

    async def home(self, request: Request) -> Response:
        try:
            session = await self.auth.require(request)
            fragments = {
                name: await self._fragment(session, name)
                for name in ("incidents", "approvals", "breaker", "jobs")
            }
        except Refused as refused:
            return await self._refused(refused, request)
        session.flash = await self.auth.sessions.take_flash(session)
        return self._html(views.fleet_page(session, fragments))

    async def _fragment(self, session: Session, name: str) -> str:
        if name == "incidents":
            listed = await self._call(session, "list_incidents", {"limit": RECENT_INCIDENTS})
            return views.incidents_fragment(listed["incidents"])
        if name == "approvals":
            listed = await self._call(session, "list_approvals", {})
            return views.approvals_fragment(session, listed["approvals"])
        if name == "breaker":
            return views.breaker_fragment(session, await self._call(session, "safety_status", {}))
        if name == "jobs":
            listed = await self._call(session, "list_jobs", {})
            now = (await self.backend.fleet_context()).now
            return views.jobs_fragment(listed["jobs"], now)
        raise Refused(404, f"no fragment {name!r}")

    async def fragment(self, request: Request) -> Response:
        try:
            session = await self.auth.require(request)
            return self._html(await self._fragment(session, request.path_params["name"]))
        except Refused as refused:
            return self._html(views.error_page(refused.status, refused.message, None), refused.status)

    async def incident(self, request: Request) -> Response:
        try:
            session = await self.auth.require(request)
            found = await self._call(
                session, "get_incident", {"incident_id": request.path_params["incident_id"]}
            )
            waiting = await self._call(session, "list_approvals", {})
        except Refused as refused:
            return await self._refused(refused, request)
        except ToolRefused as refused:
            return await self._error(404, refused.text, request)
        session.flash = await self.auth.sessions.take_flash(session)
        return self._html(views.incident_page(session, found, waiting["approvals"]))

    async def events(self, request: Request) -> Response:
        try:
            await self.auth.require(request)
        except Refused as refused:
            return Response(refused.message, status_code=refused.status, headers=SECURITY_HEADERS)
        headers = {**SECURITY_HEADERS, "X-Accel-Buffering": "no"}
        return StreamingResponse(self.feed.events(), media_type="text/event-stream", headers=headers)

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        body = self._assets.get(name)
        if body is None:
            return Response("not found", status_code=404, headers=SECURITY_HEADERS)
        headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache"}
        return Response(body, media_type=STATIC_TYPES[name], headers=headers)

    # --- actions (each one an MCP tool call as the person) ---------------------------------------

    def _back(self, form: dict[str, str]) -> str:
        target = form.get("next", "")
        return target if target.startswith("/console/") and "//" not in target else "/console/"

    async def decide(self, request: Request) -> Response:
        verdict = request.path_params["verdict"]
        approval = request.path_params["approval_id"]
        if verdict not in ("approve", "reject"):
            return self._html(views.error_page(404, f"no such decision {verdict!r}", None), 404)
        return await self._act(
            request,
            f"{verdict}_action",
            lambda form: {"approval_id": approval, "comment": form.get("comment", "")},
        )

    async def reset_breaker(self, request: Request) -> Response:
        return await self._act(request, "reset_breaker", lambda form: {"comment": form.get("comment", "")})

    async def _act(self, request: Request, tool: str, arguments: Any) -> Response:
        try:
            session, form = await self._acting(request)
            result = await self._call(session, tool, arguments(form))
        except Refused as refused:
            return await self._refused(refused, request)
        except ToolRefused as refused:
            log.info("console: %s refused: %s", tool, refused.text)
            return await self._error(403, refused.text, request)
        detail = (result or {}).get("detail") or (result or {}).get("summary") or f"{tool} done"
        await self.auth.sessions.add_flash(session, f"{tool}: {detail}")
        return RedirectResponse(self._back(form), status_code=303, headers=SECURITY_HEADERS)


def build_console(
    backend: ClusterBackend,
    tokens: BearerTokens,
    sessions: PrincipalSessions,
    nc: Any,
    stop: asyncio.Event,
    audit: AuditSink | None = None,
    *,
    login_sessions: SessionStore | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> Console:
    return Console(
        backend,
        tokens,
        sessions,
        FleetFeed(backend, nc, stop),
        audit,
        login_sessions=login_sessions,
        clock=clock,
    )
