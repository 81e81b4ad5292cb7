"""``aiops demo``: the walking skeleton as a story on the embedded platform.

A GPU falls off the bus under a running training job, and a benign application Xid happens
elsewhere. The platform parses the kernel lines, opens incidents, plans, passes the policy gate,
isolates the GPU and restarts the job from its checkpoint on a warm spare; the benign Xid leads to
no action. Then (``aiops.demo_stories``) a hang with no log line, a double-bit ECC error seen by the
kernel and by DCGM, and a slow leaf switch that slows every job crossing it. Exits 0 when every
story ends as expected.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from nats.aio.msg import Msg
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from aiops.demo_stories import ecc_story, hang_story, switch_story
from aiops.platform import Platform
from aiops.settings import Settings
from events.incident import Incident
from fleet import FleetSpec

TERMINAL = frozenset({"mitigated", "suppressed", "escalated", "resolved"})
WARMUP_S = 45 * 60  # the fleet has been training for 45 simulated minutes when the story starts


async def wait_for_incidents(platform: Platform, count: int, timeout_s: float) -> list[Incident]:
    """Wait until ``count`` incidents have reached a terminal status (watching gpu.incidents.>)."""
    done: dict[str, Incident] = {}
    finished = asyncio.Event()

    async def on_update(msg: Msg) -> None:
        incident = Incident.model_validate_json(msg.data)
        if incident.status in TERMINAL:
            done[incident.id] = incident
        else:
            done.pop(incident.id, None)
        if len(done) >= count:
            finished.set()

    sub = await platform.nc.subscribe("gpu.incidents.>", cb=on_update)
    try:
        # Incidents may have finished before we subscribed: look at the store once too.
        for incident in await platform.store.list_incidents():
            if incident.status in TERMINAL:
                done[incident.id] = incident
        if len(done) < count:
            await asyncio.wait_for(finished.wait(), timeout=timeout_s)
    finally:
        await sub.unsubscribe()
    await platform.agent.drain()
    return [i for i in await platform.store.list_incidents() if i.id in done]


def render_incident(console: Console, incident: Incident, t0: float) -> None:
    rc = incident.root_cause
    header = (
        f"[bold]{incident.title}[/bold]\n"
        f"id {incident.id} · status [bold]{incident.status}[/bold] · severity {incident.severity} · "
        f"root cause {rc.entity_type + ':' + rc.entity_id if rc else '?'} · events {incident.event_count} · "
        f"GPU-hours lost {incident.gpu_hours_lost:.2f}"
    )
    table = Table(show_header=True, header_style="bold", expand=True)
    table.add_column("sim time", no_wrap=True)
    table.add_column("step", no_wrap=True)
    table.add_column("detail")
    for entry in incident.timeline:
        table.add_row(entry.time.strftime("%H:%M:%S.%f")[:-3], entry.what, entry.detail)
    console.print(Panel(table, title=header, title_align="left"))


async def run_demo(settings: Settings, console: Console) -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="aiops-demo-") as tmp:
        # The small fleet with a third warm spare: the stories restart jobs three times.
        spec = FleetSpec.small(seed=settings.seed).model_copy(
            update={"cluster": settings.cluster, "spare_nodes": 3}
        )
        async with Platform(settings, spec=spec, data_dir=Path(tmp)) as platform:
            twin = platform.twin
            console.print(
                Panel(
                    f"NATS JetStream   {platform.nats_url} (embedded nats-server, data in {tmp})\n"
                    f"MCP over HTTP    {platform.http_url} (bearer token {platform.operator_token})\n"
                    f"Fleet twin       {twin.name}: {len(twin.nodes)} nodes, {twin.cluster_gpu_count} GPUs, "
                    f"jobs {', '.join(twin.jobs)}, spares {', '.join(n.name for n in twin.spare_nodes())}; "
                    f"clock x{settings.speed:g}\n"
                    "Pipeline         kernel log → gpu.kmsg → kmsg service → GPU_EVENTS → triage agent → "
                    "runbooks → MCP tools → Cedar gate → twin",
                    title="gpu-aiops demo: what runs where",
                    title_align="left",
                )
            )
            twin.advance(WARMUP_S)
            job = twin.job("train-01")
            victim_node, victim_gpu = job.nodes[2], 3
            console.print(
                f"[dim]{twin.now():%H:%M:%S}[/dim] fleet has trained {WARMUP_S // 60} min; "
                f"{job.name} at step {job.step}, last checkpoint at step {job.last_checkpoint_step}"
            )
            console.rule("[bold]1. A GPU falls off the bus; a benign Xid elsewhere[/bold]")
            for line in twin.inject_xid(victim_node, victim_gpu, 79):
                console.print(f"[red]kmsg[/red] {line}")
            for line in twin.inject_xid("node-013", 5, 43, pid=48213, process="python3"):
                console.print(f"[yellow]kmsg[/yellow] {line}")
            t0 = time.monotonic()
            incidents = await wait_for_incidents(platform, 2, timeout_s=45)
            for incident in sorted(incidents, key=lambda i: i.opened_at):
                render_incident(console, incident, t0)
            ok = _check(console, incidents, twin.job("train-01").state)
            shown = {i.id for i in incidents}
            for story, success in STORIES:
                later, problems = await story(platform, console)
                for incident in sorted((i for i in later if i.id not in shown), key=lambda i: i.opened_at):
                    render_incident(console, incident, t0)
                    shown.add(incident.id)
                ok = _report(console, problems, success) and ok
            console.print(
                f"job {job.name}: {twin.job(job.name).state}, gang {', '.join(twin.job(job.name).nodes)}; "
                f"events parsed {platform.kmsg.events_published}, kmsg lines {platform.kmsg.lines_seen}; "
                f"demo wall time {time.monotonic() - started:.1f} s"
            )
    return 0 if ok else 1


STORIES = [
    (hang_story, "hang pinned on the first-stalled rank's node, job restarted from its checkpoint"),
    (ecc_story, "double-bit ECC error: one incident from two signals, GPU isolated, job restarted"),
    (
        switch_story,
        "slow leaf switch: one incident blames leaf-02, no node touched, escalated to the network owner",
    ),
]


def _report(console: Console, problems: list[str], success: str) -> bool:
    for p in problems:
        console.print(f"[bold red]✗ {p}[/bold red]")
    if not problems:
        console.print(f"[bold green]✓ {success}[/bold green]")
    return not problems


def _check(console: Console, incidents: list[Incident], job_state: str) -> bool:
    by_xid = {i.xids[0]: i for i in incidents if i.xids}
    fell_off, benign = by_xid.get(79), by_xid.get(43)
    problems = []
    if fell_off is None or fell_off.status != "mitigated":
        problems.append("the Xid 79 incident was not mitigated")
    else:
        tools = sorted(a.tool for a in fell_off.actions if a.ok)
        # With spares above the reserve the job restarts on a spare swapped in explicitly.
        if tools not in (
            ["isolate_gpu", "restart_from_checkpoint"],
            ["isolate_gpu", "restart_from_checkpoint", "swap_spare"],
        ):
            problems.append(f"the Xid 79 incident took actions {tools}")
    if benign is None or benign.status != "suppressed" or benign.actions:
        problems.append("the Xid 43 incident should end suppressed with no action")
    if job_state not in ("restarting", "running"):
        problems.append(f"train-01 is {job_state}")
    for p in problems:
        console.print(f"[bold red]✗ {p}[/bold red]")
    if not problems:
        console.print(
            "[bold green]✓ GPU isolated, job restarted from its checkpoint; the benign Xid 43 left alone[/bold green]"
        )
    return not problems
