"""Two `aiops agent` processes (as `aiops up --agents 2` starts them, `aiops.agent_replicas`) on a
three-node NATS cluster; one is SIGKILLed while it owns an incident. Its peer takes over what it
owned once the leases lapse, the events it had fetched come back after the consumer's ack wait,
every fault is one mitigated incident with one executed isolation, and a write with the killed
agent's fencing token is refused.

The deadlines are the platform's own bounds plus room for work on a loaded machine: a takeover
comes at most a lease TTL after the kill (the last renewal) plus one takeover sweep (TTL / 2); an
event the killed agent had fetched comes back ``ack_wait`` after it was delivered. A phase that
misses its deadline fails naming the phase, with the tail of both agents' logs."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import nats.errors
import pytest

from agents.consumer import ACK_WAIT_S
from agents.incident_edits import needs_owner
from aiops.agent_replicas import AgentReplicas
from aiops.platform import Platform
from aiops.settings import Settings
from events import subjects
from events.incident import Incident
from events.leases import DEFAULT_TTL_S, Lease, Leases, incident_lease, lease_key
from events.models import AuditRecord
from runbooks.state import KvRunStore, RunFenced
from tests.agents.replica_support import executed
from tests.integration.test_agent_replicas import FAULTS, fleet
from tests.waiting import eventually

pytestmark = pytest.mark.slow
log = logging.getLogger(__name__)

WORK_S = 60.0
"""Room for the work itself (a fetch, a plan, the isolation, KV writes) on a loaded 2-core machine."""
TAKEOVER_S = DEFAULT_TTL_S + DEFAULT_TTL_S / 2 + WORK_S
"""The killed agent's leases lapse a TTL after its last renewal; the peer's sweep runs every TTL / 2."""
SETTLE_S = ACK_WAIT_S + Settings().group_wait_s + WORK_S
"""Events the killed agent had fetched (or that its open pull request caught) come back after ack_wait."""
START_S = 120.0
"""Two Python processes importing the platform and joining the cluster, on a loaded machine."""


def log_tails(agents: Path, lines: int = 40) -> str:
    return "\n".join(
        f"--- {f.name}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-lines:])
        for f in sorted(agents.glob("*.log"))
    )


def phase(agents: Path) -> Callable[[Callable[[], Awaitable[bool]], float, str], Awaitable[float]]:
    """Wait for one phase; on its deadline, fail with both agents' recent log lines."""

    async def wait(check: Callable[[], Awaitable[bool]], within_s: float, what: str) -> float:
        started = time.monotonic()

        async def tolerant() -> bool:
            try:
                return await check()
            except (TimeoutError, nats.errors.Error):
                return False  # the test's own read during a leader election

        try:
            await eventually(tolerant, within_s=within_s, what=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{log_tails(agents)}") from None
        took = time.monotonic() - started
        log.info("phase %r took %.1f s", what, took)
        return took

    return wait


async def owned_by(platform: Platform, leases: Leases, name: str) -> dict[str, int]:
    """The stored incidents whose live lease ``name`` holds (a replica's holder is <id>-<uuid8>),
    with the lease's revision now: at least the fencing token it took it with."""
    found: dict[str, int] = {}
    for incident in await platform.store.list_incidents(limit=1000):
        held = await leases.docs.read(lease_key(incident_lease(incident.id)))
        if held is not None and held.doc.holder.startswith(f"{name}-") and held.doc.live(time.time()):
            found[incident.id] = held.revision
    return found


async def leases_of(leases: Leases, incident_ids: dict[str, int]) -> list[Lease]:
    found = [await leases.docs.get(lease_key(incident_lease(i))) for i in incident_ids]
    return [lease for lease in found if lease is not None]


async def test_an_agent_process_killed_with_sigkill_while_owning_an_incident_repeats_no_isolation(
    tmp_path: Path,
) -> None:
    async with fleet(tmp_path, serve_http=True) as (platform, _):
        env = {**os.environ, "AIOPS_JS_REPLICAS": "3", "AIOPS_PLANNER": "rules", "AIOPS_LOG_FORMAT": "text"}
        supervisor = AgentReplicas.for_platform(
            2,
            nats_url=platform.nats_url,
            mcp_url=platform.http_url,
            token=platform.agent_token,
            agent_id="killed",
            base_env=env,
        )
        supervisor.backoff_first_s = 3600.0  # the killed replica stays dead: its peer takes over
        supervisor.log_dir = tmp_path / "agents"
        wait = phase(supervisor.log_dir)
        stop = asyncio.Event()
        running = asyncio.create_task(supervisor.run(stop))
        try:

            async def both_pulling() -> bool:
                info = await platform.js.consumer_info(subjects.STREAM_EVENTS, "triage")
                return (info.num_waiting or 0) >= 2

            await wait(both_pulling, START_S, "two agent processes on the shared consumer")
            victim, survivor = supervisor.replicas
            for node, gpu in FAULTS[:4]:
                platform.twin.inject_xid(node, gpu, 79)
                platform.twin.advance(30)
            leases = await Leases.open(platform.js)

            async def victim_owns() -> bool:
                return bool(await owned_by(platform, leases, victim.name))

            await wait(victim_owns, WORK_S, f"{victim.name} to own an incident")
            assert victim.pid is not None
            os.kill(victim.pid, signal.SIGKILL)
            killed_at = time.time()
            held = await owned_by(platform, leases, victim.name)  # with its fencing tokens, at the kill
            lapse = [lease.expires_at - killed_at for lease in await leases_of(leases, held)]
            log.info("SIGKILL %s at %.3f; its leases %s lapse in %s s", victim.name, killed_at, sorted(held),
                     [round(s, 1) for s in lapse])  # fmt: skip
            for node, gpu in FAULTS[4:]:
                platform.twin.inject_xid(node, gpu, 79)
                platform.twin.advance(30)
            taken: set[str] = set()

            async def taken_over() -> bool:
                # Each incident the killed agent held: the survivor's now, or finished before the kill.
                for incident_id in held:
                    lease = await leases.docs.get(lease_key(incident_lease(incident_id)))
                    if lease is not None and lease.holder.startswith(f"{survivor.name}-"):
                        taken.add(incident_id)
                        continue
                    incident = await platform.store.get_incident(incident_id)
                    if incident is None or needs_owner(incident):
                        return False
                return True

            await wait(taken_over, TAKEOVER_S, f"{survivor.name} to take over {sorted(held)}")
            incidents: list[Incident] = []

            async def settled() -> bool:
                incidents[:] = await platform.store.list_incidents(limit=1000)
                return len(incidents) >= len(FAULTS) and not any(needs_owner(i) for i in incidents)

            await wait(settled, SETTLE_S, f"{len(FAULTS)} incidents, none left to an owner")
            isolations: list[AuditRecord] = []

            async def audited() -> bool:
                isolations[:] = await executed(platform, "isolate_gpu")
                return len(isolations) >= len(FAULTS)

            await wait(audited, WORK_S, "every isolation in GPU_AUDIT")
            runs = await KvRunStore.open(platform.js)
            fenced = 0
            for incident in incidents:
                if incident.id not in taken:
                    continue
                for run_id in {a.run_id for a in incident.actions}:
                    state = await runs.load(run_id)
                    assert state is not None and state.fence > held[incident.id], (run_id, state)
                    # A write the killed agent had in flight, with its token: refused.
                    late = state.model_copy(update={"fence": held[incident.id], "status": "failed"})
                    with pytest.raises(RunFenced):
                        await runs.save(late)
                    fenced += 1
        finally:
            stop.set()
            await running

    assert victim.exits == [-signal.SIGKILL] and survivor.exits == []
    assert taken and fenced >= 1, (held, taken)
    assert len(incidents) == len(FAULTS)
    assert {i.status for i in incidents} == {"mitigated"}
    assert sorted((r.arguments["node"], r.arguments["gpu"]) for r in isolations) == sorted(FAULTS)
