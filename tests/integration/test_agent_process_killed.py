"""Two `aiops agent` processes (as `aiops up --agents 2` starts them, `aiops.agent_replicas`) on a
three-node NATS cluster; one is SIGKILLed while it owns an incident. Its peer takes over what it
owned once the leases lapse, the events it had fetched come back after the consumer's ack wait,
every fault is one mitigated incident with one executed isolation, and a write with the killed
agent's fencing token is refused.

The agent to kill is the first to take an incident lease (a watch on the `leases` bucket), killed
at once: it dies holding the lease, before or while it mitigates. The deadlines are the platform's
own bounds plus room for work on a loaded machine: a takeover comes at most a lease TTL after the
kill (the last renewal) plus one takeover sweep (TTL / 2); an event the killed agent had fetched
comes back ``ack_wait`` after it was delivered. A phase that misses its deadline fails naming the
phase, with the tail of both agents' logs."""

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
from nats.js.kv import KeyValue

from agents.consumer import ACK_WAIT_S
from agents.incident_edits import needs_owner
from aiops.agent_replicas import AgentReplicas, Replica
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
LAPSE_S = DEFAULT_TTL_S + DEFAULT_TTL_S / 2
"""The killed agent's leases lapse a TTL after its last renewal; the peer's sweep runs every TTL / 2."""
REDELIVERY_S = ACK_WAIT_S + Settings().group_wait_s
"""Events the killed agent had fetched (or that its open pull request caught) come back after the
ack wait; an incident it leased but had not stored yet is opened from them."""
TAKEOVER_S = max(LAPSE_S, REDELIVERY_S) + WORK_S
SETTLE_S = REDELIVERY_S + WORK_S
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


async def owned_by(leases: Leases, kv: KeyValue, name: str) -> dict[str, int]:
    """The incidents (stored or not yet) whose live lease ``name`` holds (a replica's holder is
    <id>-<uuid8>), with the lease's revision now: at least the fencing token it took it with."""
    found: dict[str, int] = {}
    for key in await kv.keys():
        held = await leases.docs.read(key) if key.startswith("incident.") else None
        if held is not None and held.doc.holder.startswith(f"{name}-") and held.doc.live(time.time()):
            found[key.removeprefix("incident.")] = held.revision
    return found


async def first_owner(watcher: KeyValue.KeyWatcher, replicas: list[Replica]) -> Replica:
    """The replica that takes the first incident lease (it opens the incident right after)."""
    async for entry in watcher:
        if entry is None or entry.operation is not None or not entry.value:
            continue  # the end of the (empty) history, or a deleted key
        lease = Lease.model_validate_json(entry.value)
        owner = [r for r in replicas if lease.holder.startswith(f"{r.name}-")]
        if owner and lease.live(time.time()):
            return owner[0]
    raise AssertionError("the lease watch ended")


async def leases_of(leases: Leases, incident_ids: dict[str, int]) -> list[Lease]:
    found = [await leases.docs.get(lease_key(incident_lease(i))) for i in incident_ids]
    return [lease for lease in found if lease is not None]


async def test_an_agent_process_killed_with_sigkill_while_owning_an_incident_repeats_no_isolation(
    tmp_path: Path,
) -> None:
    async with fleet(tmp_path, serve_http=True) as (platform, cluster):
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

            async def both_connected() -> bool:
                names = {f"aiops-agent {r.name}" for r in supervisor.replicas}
                for node in cluster.nodes:
                    connz = await asyncio.to_thread(cluster.monitor, node, "/connz")
                    connections = connz.get("connections")
                    if isinstance(connections, list):
                        names -= {str(c.get("name")) for c in connections}
                return not names

            await wait(both_connected, START_S, "two agent processes connected to NATS")
            kv = await platform.js.key_value(subjects.BUCKET_LEASES)
            watcher = await kv.watch("incident.>")
            try:
                for node, gpu in FAULTS[:4]:
                    platform.twin.inject_xid(node, gpu, 79)
                    platform.twin.advance(30)
                try:
                    async with asyncio.timeout(WORK_S):
                        victim = await first_owner(watcher, supervisor.replicas)
                except TimeoutError:
                    raise AssertionError(
                        f"no incident lease within {WORK_S}s\n{log_tails(supervisor.log_dir)}"
                    ) from None
            finally:
                await watcher.stop()  # type: ignore[no-untyped-call]
            (survivor,) = [r for r in supervisor.replicas if r is not victim]
            leases = await Leases.open(platform.js)
            assert victim.pid is not None
            os.kill(victim.pid, signal.SIGKILL)
            killed_at = time.time()
            held = await owned_by(leases, kv, victim.name)  # with its fencing tokens, at the kill
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
                # Its mitigation's runs (fenced by the incident lease); deferred repairs have their own claims.
                for run_id in {a.run_id for a in incident.actions if a.run_id.startswith(f"{incident.id}/")}:
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
