"""The console's front door without a browser: login, cookie flags, CSP, CSRF and origin checks,
no token in a URL, viewers read-only, the live feed behind the session."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest

from mcp_server.gate.policy import Principal
from tests.console.support import AGENT, OPERATOR, VIEWER, console_platform, console_url

pytestmark = pytest.mark.slow

OLGA = Principal(id="olga", role="operator", kind="person")


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


async def _login(http: aiohttp.ClientSession, base: str, origin: str, token: str) -> aiohttp.ClientResponse:
    form = await http.get(f"{base}/login")
    csrf = _csrf(await form.text())
    return await http.post(
        f"{base}/login",
        data={"token": token, "csrf": csrf},
        headers={"Origin": origin},
        allow_redirects=False,
    )


async def test_the_front_door(tmp_path: Path) -> None:
    async with console_platform(tmp_path, tick=False) as platform:
        base = console_url(platform)
        origin = base.removesuffix("/console")
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            anonymous = await http.get(f"{base}/", allow_redirects=False)
            token_in_url = await http.get(f"{base}/?token={OPERATOR}", allow_redirects=False)
            feed_anonymous = await http.get(f"{base}/events")
            wrong = await _login(http, base, origin, "not-a-token-at-all-x")
            wrong_text = await wrong.text()
            agent = await _login(http, base, origin, AGENT)
            logged = await _login(http, base, origin, OPERATOR)
            cookie = logged.headers["Set-Cookie"]
            home = await http.get(f"{base}/")
            home_text = await home.text()
            csrf = _csrf(home_text)
            reset = f"{base}/breaker/reset"
            no_csrf = await http.post(reset, data={"comment": "x"}, headers={"Origin": origin})
            wrong_origin = await http.post(
                reset, data={"comment": "x", "csrf": csrf}, headers={"Origin": "http://evil.example"}
            )
            same_origin = await http.post(
                reset, data={"comment": "nothing tripped", "csrf": csrf}, headers={"Origin": origin}
            )
            after_reset = await same_origin.text()
            script = await http.get(f"{base}/static/console.js")
            unknown_asset = await http.get(f"{base}/static/../app.py")
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as viewer:
            await _login(viewer, base, origin, VIEWER)
            viewer_home = await (await viewer.get(f"{base}/")).text()
        async with platform.sessions.session(OLGA) as tools:
            logins = (await tools.call("audit_log", {"tool": "console_login"})).structured["records"]

    assert anonymous.status == 303 and anonymous.headers["Location"] == "/console/login"
    assert token_in_url.status == 303  # a token in a URL logs nobody in
    assert feed_anonymous.status == 401
    assert wrong.status == 401 and "401: token not accepted" in wrong_text
    assert agent.status == 403  # the console is for people
    assert logged.status == 303
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and OPERATOR not in cookie
    assert "Secure" not in cookie  # plain HTTP on loopback; __Host- and Secure under TLS
    csp = home.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert "<script>" not in home_text and "style=" not in home_text
    assert no_csrf.status == 403 and "CSRF" in await no_csrf.text()
    assert wrong_origin.status == 403 and "cross-site" in await wrong_origin.text()
    assert same_origin.status == 200  # redirected home with the tool's answer
    assert "reset_breaker: the circuit breaker is closed; nothing to reset" in after_reset
    assert script.status == 200 and script.headers["Content-Type"].startswith("text/javascript")
    assert unknown_asset.status == 404
    assert "olga (operator)" in home_text
    assert "vera (viewer)" in viewer_home and 'class="approve"' not in viewer_home
    trail = [(r["principal"], r["decision"], r["result"]) for r in reversed(logins)]
    assert trail == [
        ("unknown", "deny", "token not accepted"),
        ("bot", "deny", "bot is an agent principal; the console is for people"),
        ("olga", "allow", "session started"),
        ("vera", "allow", "session started"),
    ]
