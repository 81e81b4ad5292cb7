"""Operator commands: ``aiops approvals``, ``aiops approve|reject <id>``, ``aiops breaker status|reset``
and ``aiops agent`` (the triage agent as its own process).

They talk to a running platform's MCP endpoint with the caller's bearer token (``--mcp-url`` /
``--token``, or ``AIOPS_MCP_URL`` / ``AIOPS_MCP_TOKEN``), so an approval or a breaker reset passes
the same policy gate and lands in the same audit trail as one made in an MCP client or in chat.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import typer
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from rich.console import Console

from aiops.remote import http_client, remote_errors
from aiops.settings import Settings
from contracts.client import McpToolClient, ToolResult

Render = Callable[[Console, dict[str, Any]], None]

breaker_app = typer.Typer(help="The circuit breaker on isolations: see it, reset it.", no_args_is_help=True)

McpUrl = typer.Option(
    None, "--mcp-url", help="the platform's MCP endpoint (default AIOPS_MCP_URL, else local)"
)
Token = typer.Option(None, "--token", help="your bearer token (default AIOPS_MCP_TOKEN)")
AsJson = typer.Option(False, "--json", help="print the tool's answer as JSON")


def _endpoint(settings: Settings, url: str | None, token: str | None) -> tuple[str, str]:
    found = url or settings.mcp_url or f"http://{settings.http_host}:{settings.http_port}/mcp"
    bearer = token or settings.mcp_token
    if not bearer:
        raise typer.BadParameter("no bearer token: pass --token or set AIOPS_MCP_TOKEN (aiops up prints one)")
    return found, bearer


async def call_tool(url: str, token: str, tool: str, arguments: dict[str, Any]) -> ToolResult:
    """One MCP tool call as the token's principal."""
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(http_client(token))
        client = await stack.enter_async_context(Client(streamable_http_client(url, http_client=http)))
        return await McpToolClient(client).call(tool, arguments)


def _run(
    url: str | None, token: str | None, tool: str, arguments: dict[str, Any], as_json: bool, show: Render
) -> None:
    endpoint, bearer = _endpoint(Settings(), url, token)
    with remote_errors(endpoint):
        result = asyncio.run(call_tool(endpoint, bearer, tool, arguments))
    console = Console()
    if not result.ok:
        said = result.text.removeprefix(f"Error executing tool {tool}: ")
        refusal = result.refusal
        if refusal is None:
            console.print(f"[bold red]{tool} failed:[/bold red] {said}")
        else:
            console.print(f"[bold red]{tool} refused ({refusal.kind.replace('_', ' ')}):[/bold red] {said}")
            if refusal.kind == "approval_required" and refusal.approval_id:
                console.print(f"    a person approves it with `aiops approve {refusal.approval_id}`")
        raise typer.Exit(1)
    data = result.structured if isinstance(result.structured, dict) else {}
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        show(console, data)


def _outcome(console: Console, data: dict[str, Any]) -> None:
    policy = data.get("policy", {})
    console.print(f"{data.get('detail', '')} [dim](policy {policy.get('decision')})[/dim]")


def _approvals(console: Console, data: dict[str, Any]) -> None:
    found = data.get("approvals", [])
    if not found:
        console.print("No approvals waiting." if data.get("pending", 0) == 0 else "None with that status.")
        return
    for a in found:
        console.print(
            f"[bold]{a['id']}[/bold] {a['status']}  {a['action']} on {a['target']}  "
            f"asked by {a['requested_by']}"
            + (f"  incident {a['incident_id']}" if a.get("incident_id") else "")
        )
        console.print(f"    why: {'; '.join(a.get('reasons', [])) or '-'}")
        console.print(
            f"    expires {a['expires_at']}"
            + (f"; decided by {a['decided_by']}" if a.get("decided_by") else "")
        )


def _breaker(console: Console, data: dict[str, Any]) -> None:
    b = data.get("breaker", {})
    state = (
        "[bold red]OPEN[/bold red]: new isolations are stopped" if b.get("open") else "[green]closed[/green]"
    )
    console.print(f"circuit breaker {state}")
    console.print(
        f"  taken out within {b.get('window_s', 0):g} s: {len(b.get('taken_out', []))} nodes "
        f"({b.get('taken_out_pct')}%, threshold {b.get('threshold_pct')}%) {', '.join(b.get('taken_out', []))}"
    )
    if b.get("trip_reason"):
        console.print(f"  tripped at {b.get('tripped_at')}: {b['trip_reason']}")
    if b.get("reset_by"):
        console.print(f"  last reset by {b['reset_by']} at {b.get('reset_at')}; backlog: {b.get('backlog')}")
    console.print(
        f"observe-only: {data.get('observe_only')}; change freeze: {data.get('change_freeze')}; "
        f"pending approvals: {data.get('pending_approvals')}"
    )


def register(app: typer.Typer) -> None:
    """Add the operator commands to the ``aiops`` command."""
    app.add_typer(breaker_app, name="breaker")

    @app.command()
    def approvals(
        all_: bool = typer.Option(False, "--all", help="decided ones too, not only the pending"),
        mcp_url: str | None = McpUrl,
        token: str | None = Token,
        as_json: bool = AsJson,
    ) -> None:
        """List actions waiting for a person's approval (id, action, who asked, why, expiry)."""
        status = ["pending", "approved", "rejected", "expired", "used"] if all_ else ["pending"]
        _run(mcp_url, token, "list_approvals", {"status": status}, as_json, _approvals)

    @app.command()
    def approve(
        approval_id: str = typer.Argument(..., help="the id `aiops approvals` shows"),
        comment: str = typer.Option("", "--comment", "-m", help="why, for the record"),
        mcp_url: str | None = McpUrl,
        token: str | None = Token,
        as_json: bool = AsJson,
    ) -> None:
        """Approve an action that waits for a person; the parked runbook resumes."""
        _run(
            mcp_url,
            token,
            "approve_action",
            {"approval_id": approval_id, "comment": comment},
            as_json,
            _outcome,
        )

    @app.command()
    def reject(
        approval_id: str = typer.Argument(..., help="the id `aiops approvals` shows"),
        comment: str = typer.Option("", "--comment", "-m", help="why, for the record"),
        mcp_url: str | None = McpUrl,
        token: str | None = Token,
        as_json: bool = AsJson,
    ) -> None:
        """Reject an action that waits for a person; the parked runbook is abandoned."""
        _run(
            mcp_url,
            token,
            "reject_action",
            {"approval_id": approval_id, "comment": comment},
            as_json,
            _outcome,
        )

    @app.command()
    def agent(
        mcp_url: str | None = McpUrl,
        token: str | None = typer.Option(
            None, "--token", help="the agent's bearer token (AIOPS_AGENT_TOKEN)"
        ),
        log_format: str = typer.Option(
            None, "--log-format", help="text or json (default AIOPS_LOG_FORMAT, text)"
        ),
        verbose: bool = typer.Option(False, "--verbose", "-v"),
    ) -> None:
        """Run the triage agent as its own process against a platform started with `aiops up --no-agent`
        (AIOPS_NATS_URL and the MCP endpoint it prints; the agent token it prints). One log line per
        incident change and per action."""
        from aiops.agent_process import run_agent
        from aiops.cli import _logging

        if log_format not in (None, "text", "json"):
            raise typer.BadParameter(f"--log-format is text or json, not {log_format!r}")
        settings = Settings()
        _logging(verbose, log_format or settings.log_format, default="INFO")
        endpoint, bearer = _endpoint(settings, mcp_url, token or settings.agent_token)

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await run_agent(settings, mcp_url=endpoint, token=bearer, stop=stop)

        asyncio.run(main())


@breaker_app.command("status")
def breaker_status(mcp_url: str | None = McpUrl, token: str | None = Token, as_json: bool = AsJson) -> None:
    """The breaker: open or closed, nodes taken out within its window, why it tripped, who reset it."""
    _run(mcp_url, token, "safety_status", {}, as_json, _breaker)


@breaker_app.command("reset")
def breaker_reset(
    comment: str = typer.Option(..., "--comment", "-m", help="what you checked, for the record"),
    backlog: str = typer.Option(
        "retry",
        help="held incidents: 'retry' re-plans them through the gate; 'escalate' leaves them to people",
    ),
    mcp_url: str | None = McpUrl,
    token: str | None = Token,
    as_json: bool = AsJson,
) -> None:
    """Close the breaker after looking at why it tripped; a new window starts now."""
    if backlog not in ("retry", "escalate"):
        raise typer.BadParameter("--backlog is 'retry' or 'escalate'")
    _run(mcp_url, token, "reset_breaker", {"comment": comment, "backlog": backlog}, as_json, _outcome)
