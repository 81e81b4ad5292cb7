"""The ``aiops`` command."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from typing import TYPE_CHECKING, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console

from aiops.audit_cli import register as register_audit
from aiops.kmsg_cli import kmsg_app
from aiops.node_cli import node
from aiops.ops_cli import register as register_ops
from aiops.settings import Settings
from events.liveness import Liveness, render

if TYPE_CHECKING:
    from aiops.platform import Platform

app = typer.Typer(help="gpu-aiops: triage and remediation for GPU clusters.", no_args_is_help=True)
app.add_typer(kmsg_app, name="kmsg")
register_ops(app)  # approvals, approve, reject, breaker, agent (aiops/ops_cli.py)
app.command("node")(node)  # the node agent (aiops/node_cli.py)
register_audit(app)  # audit, inject (aiops/audit_cli.py)


def _logging(verbose: bool, fmt: str = "text", default: str = "WARNING") -> None:
    # Logs go to stderr: stdout carries the MCP stdio protocol and JSON output.
    from aiops.logs import configure

    configure(logging.DEBUG if verbose else getattr(logging, default), fmt)


@app.command()
def demo(
    speed: float = typer.Option(60.0, help="simulated seconds per wall-clock second"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run the platform embedded and play a fault story: a GPU falls off the bus under a job."""
    from aiops.demo import run_demo

    _logging(verbose)
    settings = Settings(speed=speed, http_port=0)
    raise typer.Exit(asyncio.run(run_demo(settings, Console())))


@app.command()
def up(
    port: int = typer.Option(
        None, help="MCP HTTP port (default from AIOPS_HTTP_PORT / AIOPS_MCP_PORT, 8765)"
    ),
    backend: str = typer.Option(
        None, "--backend", help="twin (embedded fleet twin) or kubernetes (default from AIOPS_BACKEND, twin)"
    ),
    dcgm_source: str = typer.Option(
        None,
        "--dcgm-source",
        help="real backends: prometheus, exporters, nodes or off (default AIOPS_DCGM_SOURCE, else "
        "whichever of AIOPS_PROMETHEUS_URL / AIOPS_DCGM_EXPORTERS is set)",
    ),
    dcgm_exporter: list[str] = typer.Option(
        None,
        "--dcgm-exporter",
        help="a dcgm-exporter /metrics URL the DCGM detector reads directly (repeat it; "
        "default AIOPS_DCGM_EXPORTERS, comma-separated)",
    ),
    no_agent: bool = typer.Option(
        False, "--no-agent", help="leave the triage agent out: run it as its own process (`aiops agent`)"
    ),
    log_format: str = typer.Option(
        None, "--log-format", help="text or json (default AIOPS_LOG_FORMAT, text)"
    ),
    fleet_nodes: int = typer.Option(
        None,
        "--fleet-nodes",
        help="nodes of the fleet twin: a multiple of 8, at least 16 (default AIOPS_FLEET_NODES, 16)",
    ),
    agents: int = typer.Option(
        None,
        "--agents",
        help="run N agent replicas as processes of their own, restarted if one dies "
        "(default AIOPS_AGENTS; unset = one agent inside this process)",
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run the whole platform until Ctrl-C: NATS, the backend (fleet twin or Kubernetes), events
    services, agent(s), MCP over HTTP with /metrics. One log line per incident change and per action."""

    from aiops.detection import DcgmSettingError, dcgm_choice
    from aiops.platform import Platform, freeze_startup_objects
    from mcp_server.backends.base import BackendError

    overrides: dict[str, object] = {} if port is None else {"http_port": port}
    if no_agent:
        overrides["embedded_agent"] = False
    if backend is not None:
        overrides["backend"] = backend
    if log_format is not None:
        overrides["log_format"] = log_format
    if dcgm_source is not None:
        overrides["dcgm_source"] = dcgm_source
    if dcgm_exporter:
        overrides["dcgm_exporters"] = ",".join(dcgm_exporter)
    if fleet_nodes is not None:
        overrides["fleet_nodes"] = fleet_nodes
    if agents is not None:
        overrides["agents"] = agents
    console = Console(stderr=True)
    settings = _settings_or_exit(console, **overrides)
    _logging(verbose, settings.log_format, default="INFO")
    if settings.backend != "twin":
        try:
            dcgm_choice(settings)  # before anything starts
        except DcgmSettingError as exc:
            _fail(str(exc))
    # With replicas the platform serves them, as for `aiops agent` on another machine.
    platform_settings = (
        settings if not settings.agents else settings.model_copy(update={"embedded_agent": False})
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with Platform(platform_settings) as platform:
            freeze_startup_objects()
            console.print(_banner(platform, settings))
            replicas = _start_replicas(platform, settings, stop, verbose) if settings.agents else None
            await report_loops(platform.liveness, console, stop)
            console.print("stopping…")
            if replicas is not None:
                await replicas  # every replica stopped before the platform it talks to

    try:
        asyncio.run(main())
    except BackendError as exc:
        _fail(f"backend {settings.backend}: {exc}")
    except DcgmSettingError as exc:
        _fail(str(exc))


def _start_replicas(
    platform: Platform, settings: Settings, stop: asyncio.Event, verbose: bool
) -> asyncio.Task[None]:
    """``settings.agents`` replicas of ``aiops agent`` against this platform, supervised until ``stop``."""
    from aiops.agent_replicas import AgentReplicas

    token = platform.agent_token or settings.agent_token
    if not token:
        _fail("--agents: AIOPS_TOKENS has an agent token; set AIOPS_AGENT_TOKEN to it for the replicas")
    replicas = AgentReplicas.for_platform(
        settings.agents or 0,
        nats_url=platform.nats_url,
        mcp_url=platform.http_url,
        token=token,
        agent_id=settings.agent_id,
        verbose=verbose,
    )
    task = asyncio.create_task(replicas.run(stop), name="agent replicas")

    def ended(done: asyncio.Task[None]) -> None:
        if not done.cancelled() and done.exception() is not None:
            logging.getLogger(__name__).error("agent replicas cannot run: %s", done.exception())
            stop.set()

    task.add_done_callback(ended)
    return task


BEATS_ONE_PROCESS_KEEPS_UP = 10_000
"""Heartbeats per second of the twin's ranks above which the platform process falls behind (a
1,000-node twin at x60 with 10 s beats: ~48,000/s, and MCP calls time out on a 2-core machine)."""


def _fail(message: str) -> NoReturn:
    typer.echo(f"aiops: {message}", err=True)
    raise typer.Exit(2)


def _banner(platform: Platform, settings: Settings) -> str:
    from aiops.safety import observe_only

    base = platform.http_url.removesuffix("/mcp")
    lines = [
        "[bold]gpu-aiops is up[/bold]",
        f"  NATS        {platform.nats_url}",
        f"  MCP (HTTP)  {platform.http_url}",
        f"  health      {base}/healthz, {base}/readyz; metrics {base}/metrics",
    ]
    if platform.operator_token:
        lines.append(
            f"  token       {platform.operator_token} (role operator; set AIOPS_TOKENS to configure)"
        )
    if settings.agents:
        lines.append(
            f"  agents      {settings.agents} replicas, each its own process ({settings.agent_id}-1.."
            f"{settings.agent_id}-{settings.agents}); one that dies is restarted"
        )
    elif not settings.embedded_agent:
        lines.append(
            f"  agent       not embedded; run it: AIOPS_NATS_URL={platform.nats_url} aiops agent "
            f"--mcp-url {platform.http_url} --token {platform.agent_token or '<agent token>'}"
        )
    if platform.has_twin:
        twin = platform.twin
        lines.append(f"  DCGM        {platform.detection.metrics_url} (the twin's dcgm-exporter)")
        lines.append(
            f"  fleet twin  {twin.name}: {len(twin.nodes)} nodes, {twin.cluster_gpu_count} GPUs, "
            f"clock x{settings.speed:g}"
        )
        beats = twin.cluster_gpu_count * settings.speed / settings.heartbeat_interval_s
        if beats > BEATS_ONE_PROCESS_KEEPS_UP:
            lines.append(
                f"  [yellow]heartbeats[/yellow]  the twin's ranks beat ~{beats:,.0f}/s (GPUs x speed / "
                f"AIOPS_HEARTBEAT_INTERVAL_S): more than one process keeps up with; raise "
                f"AIOPS_HEARTBEAT_INTERVAL_S or lower AIOPS_SPEED"
            )
    else:
        lines.append(f"  backend     {settings.backend}, cluster {settings.cluster}; wall clock")
        lines.append(f"  DCGM        {platform.detection.metrics_url or 'off (AIOPS_DCGM_SOURCE=off)'}")
        if observe_only(settings):
            lines.append(
                "  mode        observe-only: plans and records, changes nothing (AIOPS_OBSERVE_ONLY=false acts)"
            )
    lines.append("Ctrl-C stops everything.")
    return "\n".join(lines)


def _settings_or_exit(console: Console, **overrides: object) -> Settings:
    """Settings, or one readable line per bad setting and exit 2 (nothing starts on a bad setting)."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            console.print(
                f"[red]invalid setting[/red] {where}: {err['msg']}", highlight=False, soft_wrap=True
            )
        raise typer.Exit(2) from None


async def report_loops(
    liveness: Liveness, console: Console, stop: asyncio.Event, every_s: float = 5.0
) -> None:
    """Until ``stop``: print the loops' status whenever one goes stale, crashes or recovers."""
    console.print("loops:\n" + render(liveness.statuses()))
    shown: tuple[str, ...] = ()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every_s)
        troubled = tuple(s.name for s in liveness.statuses() if s.stale or s.state == "crashed")
        if troubled != shown:
            headline = f"loops in trouble: {', '.join(troubled)}" if troubled else "every loop healthy again"
            console.print(f"{headline}\n" + render(liveness.statuses()))
            shown = troubled


def _freeze_the_fleet() -> None:
    """Move everything built so far (the fleet twin: a large, long-lived object graph) out of the
    garbage collector's sight: full collections no longer walk it, which takes the p99 of listing
    tools on a 12,000-GPU twin from ~150 ms to ~15 ms (evals/benchmarks/mcp_latency.py)."""
    gc.collect()
    gc.freeze()


@app.command()
def mcp(
    http: bool = typer.Option(
        False, "--http", help="serve streamable HTTP with bearer tokens instead of stdio"
    ),
    port: int = typer.Option(None, help="HTTP port (default AIOPS_HTTP_PORT, 8765; 0 = any free port)"),
    read_only: bool = typer.Option(False, "--read-only", help="hide and refuse every mutating tool"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Serve the MCP tools: over stdio (Claude Desktop, Claude Code, Cursor, the MCP Inspector) as
    AIOPS_MCP_PRINCIPAL with AIOPS_MCP_ROLE, or with --http over streamable HTTP where each bearer
    token (AIOPS_TOKENS / AIOPS_TOKENS_FILE) maps to a principal and role.

    Against the embedded fleet twin, or AIOPS_BACKEND=kubernetes (+ AIOPS_PROMETHEUS_URL).
    """
    _logging(verbose)
    overrides: dict[str, object] = {}
    if read_only:
        overrides["read_only"] = True
    if port is not None:
        overrides["http_port"] = port
    settings = Settings(**overrides)  # type: ignore[arg-type]
    if not http:
        from aiops.standalone import build_standalone_server

        server = build_standalone_server(settings, confirm_destructive=settings.confirm_destructive)
        _freeze_the_fleet()
        with contextlib.suppress(KeyboardInterrupt):
            server.run()
        return

    from aiops.build import serve_http as serving
    from aiops.standalone import build_standalone_http

    built = build_standalone_http(settings)
    _freeze_the_fleet()
    console = Console(stderr=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with serving(built.server, settings.http_host, settings.http_port) as url:
            console.print(f"gpu-aiops MCP (streamable HTTP, stateless) at {url}")
            if built.generated_token:
                console.print(
                    f"  token {built.generated_token} (role operator; set AIOPS_TOKENS to configure)"
                )
            if settings.read_only:
                console.print("  read-only: mutating tools are hidden and refused")
            await stop.wait()

    asyncio.run(main())


@app.command()
def slash(
    text: str = typer.Argument(..., help='the command, e.g. "/gpu incidents" or "node node-003"'),
    as_json: bool = typer.Option(False, "--json", help="print the Slack Block Kit reply"),
    yes: bool = typer.Option(False, "--yes", "-y", help="confirm a destructive command without asking"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run an on-call /gpu command from the terminal (as in chat), e.g. aiops slash "/gpu status"."""
    from aiops.remote import remote_errors
    from aiops.slash_cli import TerminalConfirmation, render, run_slash

    _logging(verbose)
    settings = Settings()
    confirmation = TerminalConfirmation(yes)

    def interrupt(signum: int, frame: object) -> None:
        # Not asyncio's own handler (which cancels the run and leaves input() waiting): Ctrl-C at
        # the confirmation question raises where the person is, and the question says no.
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        with remote_errors(settings.mcp_url or "the local fleet twin"):
            reply = asyncio.run(run_slash(text, settings, assume_yes=yes, confirmation=confirmation))
    finally:
        signal.signal(signal.SIGINT, previous)
    if confirmation.cancelled:
        typer.echo("cancelled: nothing was changed", err=True)
        raise typer.Exit(130)
    typer.echo(render(reply, as_json))
    if not reply.ok:
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
