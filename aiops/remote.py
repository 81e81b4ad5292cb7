"""What a command against a running platform says when the platform cannot be used: one or two
readable lines on stderr and a non-zero exit, never a traceback of the HTTP client's task groups."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import httpx2
import typer
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError


async def _refused(response: httpx2.Response) -> None:
    # The MCP client turns an HTTP 401/403 into "Server returned an error response" and drops the
    # status: raise it here so the person reads why.
    if response.status_code in (401, 403):
        response.raise_for_status()


def http_client(token: str | None, timeout: float = 60) -> httpx2.AsyncClient:
    """The HTTP client of a command against the platform: the bearer token, and refusals kept."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx2.AsyncClient(headers=headers, timeout=timeout, event_hooks={"response": [_refused]})


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    """The exception, what it wraps (groups, causes, contexts), innermost last."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            stack.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                stack.append(linked)


def explain(exc: BaseException, url: str) -> str | None:
    """One line for a failure we know, or None."""
    for leaf in _leaves(exc):
        if isinstance(leaf, httpx2.HTTPStatusError):
            status = leaf.response.status_code
            if status == 401:
                return "401: token not accepted (check --token / AIOPS_MCP_TOKEN)"
            if status == 403:
                return f"403: {url} refused this token"
            if status == 404:
                return f"404: nothing at {url} (the MCP endpoint ends in /mcp)"
            return f"{status}: {url} answered with an error"
        if isinstance(leaf, httpx2.ConnectError | httpx2.ConnectTimeout | ConnectionRefusedError):
            return f"cannot reach {url}: is `aiops up` running there? ({leaf})"
        if isinstance(leaf, httpx2.TimeoutException):
            return f"{url} did not answer in time"
        if isinstance(leaf, ValidationError):
            first = leaf.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            return f"unexpected answer from {url}: {where}: {first['msg']}"
    for leaf in _leaves(exc):
        if isinstance(leaf, MCPError):
            return f"{url}: {leaf}"
    return None


@contextmanager
def remote_errors(url: str) -> Iterator[None]:
    """Turn a known failure of a remote call into a readable line and exit 1; Ctrl-C exits 130."""
    try:
        yield
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise typer.Exit(130) from None
    except (typer.Exit, typer.Abort):
        raise
    except BaseException as exc:
        line = explain(exc, url)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        raise typer.Exit(1) from None
