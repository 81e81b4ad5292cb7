"""``aiops audit`` (read the audit trail) and ``aiops inject`` (break the fleet twin of a running
``aiops up``), both through the platform's MCP endpoint as the caller's token (the ``audit_log``
and ``inject_fault`` tools), like the other operator commands (aiops/ops_cli.py)."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from aiops.ops_cli import AsJson, McpUrl, Token, _run


def _trail(console: Console, data: dict[str, Any]) -> None:
    records = data.get("records", [])
    if not records:
        console.print(f"No audit records match ({data.get('total', 0)} in the trail).")
        return
    for r in records:
        colour = {"allow": "green", "deny": "red"}.get(r["decision"], "yellow")
        args = ", ".join(f"{k}={v}" for k, v in r.get("arguments", {}).items() if k != "idempotency_key")
        console.print(
            f"{r['time']}  {escape(r['principal'])} ({r['role']})  [bold]{r['tool']}[/bold]({escape(args)})  "
            f"[{colour}]{r['decision']}[/{colour}]"
            + ("" if r["ok"] else "  [red]not done[/red]")
            + ("  [dim]dry run[/dim]" if r.get("dry_run") else "")
        )
        why = "; ".join(r.get("reasons", [])) or r.get("result", "")
        if why:
            console.print(f"    {escape(why)}", highlight=False)
    console.print(
        f"[dim]{len(records)} shown of {data.get('matched')} matching, {data.get('total')} in the trail[/dim]"
    )


def _injected(console: Console, data: dict[str, Any]) -> None:
    console.print(f"injected: {escape(data.get('detail', ''))}")
    for line in data.get("kernel_lines", []):
        console.print(f"    {escape(line)}", highlight=False)


def register(app: typer.Typer) -> None:
    @app.command()
    def audit(
        principal: str | None = typer.Option(None, "--principal", "-p", help="only calls by this principal"),
        tool: str | None = typer.Option(None, "--tool", "-t", help="only calls of this tool"),
        decision: str | None = typer.Option(
            None, "--decision", "-d", help="allow, deny or approval_required"
        ),
        node: str | None = typer.Option(None, "--node", "-n", help="only calls about this node or its GPUs"),
        since: str | None = typer.Option(None, "--since", "-s", help="30m, 2h, 1d, or an ISO time"),
        limit: int = typer.Option(50, "--limit", help="at most this many, newest first"),
        mcp_url: str | None = McpUrl,
        token: str | None = Token,
        as_json: bool = AsJson,
    ) -> None:
        """The audit trail, newest first: who called which mutating tool, what the policy decided."""
        if decision is not None and decision not in ("allow", "deny", "approval_required"):
            raise typer.BadParameter("--decision is allow, deny or approval_required")
        filters = {"principal": principal, "tool": tool, "decision": decision, "node": node, "since": since}
        arguments: dict[str, Any] = {k: v for k, v in filters.items() if v is not None} | {"limit": limit}
        _run(mcp_url, token, "audit_log", arguments, as_json, _trail)

    @app.command()
    def inject(
        kind: str = typer.Argument(
            ..., help="xid, ecc, hang, slow_link, throttle, slow_workload, sdc, node_lost or nic_down"
        ),
        node: str | None = typer.Option(None, "--node", help="xid, ecc, throttle, sdc, node_lost, nic_down"),
        gpu: int | None = typer.Option(None, "--gpu", help="xid, ecc, throttle, sdc"),
        xid: int | None = typer.Option(None, "--xid", help="xid: the code, e.g. 79"),
        ecc: str = typer.Option(
            "dbe", "--ecc", help="ecc: dbe, sbe_burst, remap_pending, remap_failure, retired_pages"
        ),
        count: int = typer.Option(1, "--count", help="ecc sbe_burst: how many"),
        job: str | None = typer.Option(None, "--job", help="hang, slow_workload"),
        rank: int | None = typer.Option(None, "--rank", help="hang: the rank (default any)"),
        leaf: str | None = typer.Option(None, "--leaf", help="slow_link: the leaf switch"),
        factor: float = typer.Option(2.0, "--factor", help="slow_link, throttle, slow_workload (1 ends it)"),
        mode: str = typer.Option("nan", "--mode", help="sdc: nan (the loss goes NaN) or spike"),
        transient: bool = typer.Option(False, "--transient", help="sdc: a one-off corruption"),
        mcp_url: str | None = McpUrl,
        token: str | None = Token,
        as_json: bool = AsJson,
    ) -> None:
        """Break the fleet twin of a running `aiops up`, as the scenarios do, e.g.
        `aiops inject xid --node node-003 --gpu 3 --xid 79`. Refused against a real cluster."""
        kinds = (
            "xid",
            "ecc",
            "hang",
            "slow_link",
            "throttle",
            "slow_workload",
            "sdc",
            "node_lost",
            "nic_down",
        )
        if kind not in kinds:
            raise typer.BadParameter(f"KIND is one of {', '.join(kinds)}")
        arguments: dict[str, Any] = {"kind": kind, "ecc": ecc, "count": count, "factor": factor}
        if kind == "sdc":
            arguments |= {"mode": mode, "transient": transient}
        extra = {"node": node, "gpu": gpu, "xid": xid, "job": job, "rank": rank, "leaf": leaf}
        arguments |= {k: v for k, v in extra.items() if v is not None}
        _run(mcp_url, token, "inject_fault", arguments, as_json, _injected)
