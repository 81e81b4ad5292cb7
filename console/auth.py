"""Who is at the console: a bearer token (the same tokens and roles as the MCP endpoint) exchanged
once for a session cookie, and the checks every request passes.

- The cookie is ``HttpOnly``, ``SameSite=Strict``, ``Secure`` (and ``__Host-`` prefixed) when the
  console is served over TLS; it holds a random session id, never the token.
- Every state-changing request carries the session's CSRF token in its form body and comes from
  the console's own origin (``Origin``, or ``Sec-Fetch-Site: same-origin`` where a browser sends no
  Origin); anything else is refused before it reaches a tool.
- No token in a URL: the login form posts it; nothing reads one from a query string.

Sessions live in NATS (``console.sessions``): every replica accepts them, a restart keeps them;
they expire after ``SESSION_TTL_S``.
"""

from __future__ import annotations

import hmac
import secrets

from starlette.requests import Request
from starlette.responses import Response

from console.sessions import SESSION_TTL_S, Session, SessionStore
from mcp_server.gate.policy import Principal
from mcp_server.identity import BearerTokens

__all__ = ["SESSION_TTL_S", "ConsoleAuth", "Refused", "Session"]
COOKIE = "aiops_console"
SECURE_COOKIE = "__Host-aiops_console"
LOGIN_CSRF_COOKIE = "aiops_console_login"

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # "no-referrer" makes Chromium send "Origin: null" on form posts
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class Refused(Exception):
    """A request the console turns away before any tool sees it (status, one readable line)."""

    def __init__(self, status: int, message: str, principal: Principal | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.principal = principal  # who it was, when the token was known


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def cookie_name(request: Request) -> str:
    return SECURE_COOKIE if _secure(request) else COOKIE


class ConsoleAuth:
    def __init__(self, tokens: BearerTokens, sessions: SessionStore) -> None:
        self._tokens = tokens
        self.sessions = sessions

    async def session(self, request: Request) -> Session | None:
        sid = request.cookies.get(cookie_name(request))
        if not sid:
            return None
        return await self.sessions.get(sid)

    async def require(self, request: Request) -> Session:
        found = await self.session(request)
        if found is None:
            raise Refused(401, "not logged in")
        return found

    async def login(self, token: str, response: Response, request: Request) -> Principal:
        principal = self._tokens.principal_for(token.strip()) if token.strip() else None
        if principal is None:
            raise Refused(401, "token not accepted")
        if principal.kind != "person":
            raise Refused(
                403, f"{principal.id} is an {principal.kind} principal; the console is for people", principal
            )
        session = await self.sessions.start(principal)
        response.set_cookie(
            cookie_name(request),
            session.id,
            max_age=int(SESSION_TTL_S),
            path="/",
            httponly=True,
            samesite="strict",
            secure=_secure(request),
        )
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
        return principal

    async def logout(self, request: Request, response: Response) -> None:
        sid = request.cookies.get(cookie_name(request))
        if sid:
            await self.sessions.end(sid)
        response.delete_cookie(cookie_name(request), path="/", secure=_secure(request), httponly=True)


def check_origin(request: Request) -> None:
    """A state-changing request must come from the console's own origin."""
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.url.netloc}"
    if origin is not None:
        if origin != own:
            raise Refused(403, f"cross-site request refused (Origin {origin} is not {own})")
        return
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise Refused(403, "cross-site request refused (Sec-Fetch-Site)")


def check_csrf(session: Session, submitted: str | None) -> None:
    if not submitted or not hmac.compare_digest(submitted.encode(), session.csrf.encode()):
        raise Refused(403, "missing or wrong CSRF token; reload the page and try again")


def login_csrf(request: Request) -> str:
    """The login form's own CSRF token (double-submit: a cookie and a form field that must match)."""
    return request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)


def check_login_csrf(request: Request, submitted: str | None) -> None:
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not cookie or not submitted or not hmac.compare_digest(cookie.encode(), submitted.encode()):
        raise Refused(403, "missing or wrong CSRF token; reload the login page and try again")
