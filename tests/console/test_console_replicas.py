"""Two console replicas behind a load balancer share one nats-server: a session started on one is
accepted by the other (its CSRF token too, and the message it leaves for the next page), a
replica started afresh (a restart) logs nobody out, and a logout on any replica ends the session
everywhere. The bucket holds hashes of session ids, never a cookie's value."""

from __future__ import annotations

import asyncio
import dataclasses
import re

import httpx2
import pytest
from nats.js import JetStreamContext
from starlette.applications import Starlette

from chatops.sessions import PrincipalSessions
from console.app import Console, build_console
from console.auth import COOKIE, SESSION_TTL_S
from console.sessions import KvSessions
from events import subjects
from fleet import FleetSpec, FleetTwin
from mcp_server.backends.twin.backend import TwinBackend
from mcp_server.deps import ServerDeps
from mcp_server.gate.policy import PolicyGate, Principal
from mcp_server.identity import BearerTokens, fixed_identity
from mcp_server.server import build_server

pytestmark = pytest.mark.slow

OLGA_TOKEN = "replica-operator-olga-5c1e"
ORIGIN = "http://console.test"


async def replica(js: JetStreamContext, backend: TwinBackend, gate: PolicyGate) -> Console:
    """One control-plane process's console: its own memory, the shared NATS."""
    deps = ServerDeps(backend=backend, gate=gate, identity=fixed_identity(Principal(id="x", role="viewer")))
    people = PrincipalSessions(lambda p: build_server(dataclasses.replace(deps, identity=fixed_identity(p))))
    tokens = BearerTokens({OLGA_TOKEN: Principal(id="olga", role="operator", kind="person")})
    return build_console(
        backend, tokens, people, None, asyncio.Event(), login_sessions=await KvSessions.open(js)
    )


def browser(console: Console) -> httpx2.AsyncClient:
    app = Starlette(routes=[console.mount()])
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=ORIGIN)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:300]
    return found.group(1)


async def log_in(client: httpx2.AsyncClient) -> str:
    form = await client.get("/console/login")
    answer = await client.post(
        "/console/login",
        data={"token": OLGA_TOKEN, "csrf": csrf_of(form.text)},
        headers={"Origin": ORIGIN},
    )
    assert answer.status_code == 303, answer.text
    return answer.cookies[COOKIE]


async def test_two_replicas_accept_each_others_sessions_and_a_restart_logs_nobody_out(
    js: JetStreamContext,
) -> None:
    twin = FleetTwin(FleetSpec.small())
    twin.advance(2700)
    backend, gate = TwinBackend(twin), PolicyGate.from_directory()
    a, b = await replica(js, backend, gate), await replica(js, backend, gate)
    async with browser(a) as on_a, browser(b) as on_b:
        sid = await log_in(on_a)
        cookie = {"Cookie": f"{COOKIE}={sid}"}
        page_a = await on_a.get("/console/", headers=cookie)
        page_b = await on_b.get("/console/", headers=cookie)
        reset = await on_b.post(
            "/console/breaker/reset",
            data={"comment": "nothing tripped", "csrf": csrf_of(page_a.text)},
            headers={**cookie, "Origin": ORIGIN},
        )
        flashed_on_a = await on_a.get("/console/", headers=cookie)
        shown_once = await on_b.get("/console/", headers=cookie)
    kv = await js.key_value(subjects.BUCKET_CONSOLE_SESSIONS)
    stored = await kv.keys()
    restarted = await replica(js, backend, gate)
    async with browser(restarted) as on_c, browser(a) as on_a:
        after_restart = await on_c.get("/console/", headers=cookie)
        out = await on_c.post(
            "/console/logout",
            data={"csrf": csrf_of(after_restart.text)},
            headers={**cookie, "Origin": ORIGIN},
        )
        after_logout = await on_a.get("/console/", headers=cookie)
    status = await kv.status()

    assert page_a.status_code == page_b.status_code == 200 and "olga" in page_b.text
    assert csrf_of(page_b.text) == csrf_of(page_a.text)  # one session, one CSRF token
    assert reset.status_code == 303, reset.text  # B accepted A's session and its CSRF token
    assert "reset_breaker:" in flashed_on_a.text and "reset_breaker:" not in shown_once.text
    assert after_restart.status_code == 200 and "olga" in after_restart.text
    assert out.status_code == 303
    assert after_logout.status_code == 303 and after_logout.headers["location"] == "/console/login"
    assert status.ttl == SESSION_TTL_S
    assert len(stored) == 1 and sid not in stored[0]  # a hash of the session id, not the cookie
