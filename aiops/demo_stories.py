"""The demo's second act: faults that print no Xid of their own, or more than one signal.

1. A hang: one rank of ``train-02`` stops inside a step and the others wait in the all-reduce.
   No log line at all; the hang detector notices from the heartbeats within the job's own
   threshold (seconds, not NCCL's 10-minute watchdog) and names the rank that stopped first.
2. A double-bit ECC error under ``train-01``: the kernel's Xid 48/63 lines and DCGM's counters are
   two signals of one fault, so one incident: isolate the GPU, restart from the checkpoint.
3. A slow leaf switch: every job crossing ``leaf-02`` slows down at once. One incident blames the
   switch; the healthy nodes under it stay in service and the network owner gets it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from rich.console import Console

from aiops.platform import Platform
from events.incident import Incident
from mcp_server.gate.policy import Principal

ON_CALL = Principal(id="oncall-olga", role="operator", kind="person")
TERMINAL = frozenset({"mitigated", "suppressed", "escalated", "resolved"})
LATER_S = 600  # "ten minutes later": restarts finish, the jobs train again


async def wait_until(
    platform: Platform,
    done: Callable[[list[Incident]], bool],
    timeout_s: float,
    also_settled: frozenset[str] = frozenset(),
) -> list[Incident]:
    """Poll the incident store until ``done(incidents)`` holds and nothing is left open (or in one of
    the ``also_settled`` statuses, e.g. waiting for a person)."""
    deadline = time.monotonic() + timeout_s
    while True:
        incidents = await platform.store.list_incidents(limit=500)
        settled = all(i.status in TERMINAL or i.status in also_settled for i in incidents)
        if settled and done(incidents):
            await platform.agent.drain()
            return await platform.store.list_incidents(limit=500)
        if time.monotonic() > deadline:
            return incidents
        await asyncio.sleep(0.1)


def _tools(incident: Incident | None) -> list[str]:
    return sorted(a.tool for a in incident.actions if a.ok) if incident else []


async def hang_story(platform: Platform, console: Console) -> tuple[list[Incident], list[str]]:
    twin, job = platform.twin, platform.twin.job("train-02")
    rank = 9
    node, gpu = job.nodes[rank // job.gpus_per_node], rank % job.gpus_per_node
    threshold = platform.detection.service.hang.threshold_s(job.name)
    console.rule("[bold]2. A hang: no Xid, no log line[/bold]")
    console.print(
        f"[dim]{twin.now():%H:%M:%S}[/dim] rank {rank} of {job.name} ({node} GPU {gpu}) stops inside step "
        f"{job.step + 1}; the other {job.gpus - 1} ranks wait in the all-reduce. NCCL's watchdog would fire "
        f"in 10 minutes; the hang threshold of this job is {threshold:.0f} s (from its {job.step_time_s:g} s steps)."
    )
    twin.inject_hang(job.name, rank)

    def hung(incidents: list[Incident]) -> bool:
        return any(i.kind == "hang" for i in incidents)

    incidents = await wait_until(platform, hung, 30)
    hang = next((i for i in incidents if i.kind == "hang"), None)
    problems = []
    if hang is None or hang.status != "mitigated":
        problems.append(
            f"the hang of {job.name} was not mitigated ({hang.status if hang else 'no incident'})"
        )
    elif hang.root_cause is None or hang.root_cause.entity_id != node:
        problems.append(f"the hang was not pinned on {node}")
    elif not {"restart_from_checkpoint", "swap_spare"} & set(_tools(hang)):
        problems.append(f"the hang incident took actions {_tools(hang)}")
    return incidents, problems


async def ecc_story(platform: Platform, console: Console) -> tuple[list[Incident], list[str]]:
    twin = platform.twin
    twin.advance(LATER_S)
    job = twin.job("train-01")
    node, gpu = job.nodes[4], 2
    console.rule("[bold]3. A double-bit ECC error: the kernel log and DCGM agree[/bold]")
    console.print(
        f"[dim]{twin.now():%H:%M:%S}[/dim] ten minutes later, {job.name} trains again ({job.state}). "
        f"HBM on {node} GPU {gpu} takes an uncorrectable error: the driver prints Xid 48 and 63, and "
        f"dcgm-exporter's counters move (DBE +1, a row remap pending)."
    )
    for line in twin.inject_ecc(node, gpu, "dbe"):
        console.print(f"[red]kmsg[/red] {line}")

    def dbe(incidents: list[Incident]) -> bool:
        return any(f"{node}/{gpu}" in i.affected_gpus and "ecc.dbe" in i.findings for i in incidents)

    incidents = await wait_until(platform, dbe, 30, also_settled=frozenset({"awaiting_approval"}))
    found = next(
        (i for i in incidents if f"{node}/{gpu}" in i.affected_gpus and (48 in i.xids or i.kind == "ecc")),
        None,
    )
    if found is not None and found.status == "awaiting_approval" and found.pending_approvals:
        # The restart would take the last warm spare, the reserve: the policy asks a person first.
        approval = found.pending_approvals[-1].id
        console.print(
            f"[dim]{twin.now():%H:%M:%S}[/dim] the restart would dip into the spare reserve, so the policy "
            f"asks a person: the on-call operator approves {approval} (as `aiops approve {approval}` would)."
        )
        async with platform.sessions.session(ON_CALL) as person:
            answer = await person.call(
                "approve_action", {"approval_id": approval, "comment": "DBE confirmed; take the spare"}
            )
        if not answer.ok:
            console.print(f"[bold red]the approval failed: {answer.text}[/bold red]")
        incidents = await wait_until(
            platform, lambda now: dbe(now) and all(i.status != "awaiting_approval" for i in now), 30
        )
        found = next((i for i in incidents if i.id == found.id), found)
    problems = []
    if found is None or found.status != "mitigated":
        problems.append(f"the double-bit error on {node} GPU {gpu} was not mitigated")
    elif not {"isolate_gpu", "restart_from_checkpoint"} <= set(
        _tools(found)
    ):  # + swap_spare with spares to spare
        problems.append(f"the double-bit error took actions {_tools(found)}")
    elif "ecc.dbe" not in found.findings or 48 not in found.xids:
        problems.append("the Xid 48 line and DCGM's DBE counter did not end up in one incident")
    return incidents, problems


async def switch_story(platform: Platform, console: Console) -> tuple[list[Incident], list[str]]:
    twin = platform.twin
    twin.advance(LATER_S)
    crossing = sorted(
        name for name, job in twin.jobs.items() if any(twin.node(n).leaf == "leaf-02" for n in job.nodes)
    )
    isolations = len(twin.isolations_since(twin.spec.epoch))
    restarts = {name: job.restarts for name, job in twin.jobs.items()}
    throughput = platform.detection.service.throughput
    deadline = time.monotonic() + 20
    # The detector learns each job's normal step time first (a demo's wait, polled like a person would).
    while any(throughput.baseline(j) is None for j in crossing) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    console.rule("[bold]4. A slow leaf switch: many jobs slow at once, one root cause[/bold]")
    console.print(
        f"[dim]{twin.now():%H:%M:%S}[/dim] leaf-02 starts dropping packets: every collective crossing it "
        f"takes twice as long. Jobs with nodes under it: {', '.join(crossing)}."
    )
    twin.degrade_link("leaf-02", 2.0)

    def blamed(incidents: list[Incident]) -> bool:
        return any(i.kind == "switch" for i in incidents)

    incidents = await wait_until(platform, blamed, 40)
    switches = [i for i in incidents if i.kind == "switch"]
    problems = []
    if len(switches) != 1:
        problems.append(f"expected one switch incident, got {len(switches)}")
    else:
        sw = switches[0]
        if sw.root_cause is None or sw.root_cause.entity_id != "leaf-02" or sw.status != "escalated":
            problems.append(f"the switch incident blames {sw.root_cause} and is {sw.status}")
        if sw.actions:
            problems.append(f"the switch incident acted on nodes: {_tools(sw)}")
        stray = [
            i.id for i in incidents if i.kind == "throughput" and i.status not in ("suppressed", "resolved")
        ]
        if stray:
            problems.append(f"per-job slowdowns were not folded into the switch incident: {stray}")
    if len(twin.isolations_since(twin.spec.epoch)) != isolations:
        problems.append("a GPU was isolated for the switch")
    if {name: job.restarts for name, job in twin.jobs.items()} != restarts:
        problems.append("a job was restarted for the switch")
    return incidents, problems
