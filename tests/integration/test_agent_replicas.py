"""Three triage agents on a three-node NATS cluster (JetStream replicas 3), sharing the durable
consumer: independent Xid 79 faults are each one incident and one isolation in GPU_AUDIT, and
nothing is left open — also when one agent dies mid-flow, and when the NATS server leading the
`leases` bucket is SIGKILLed mid-flow and started again. An `aiops agent` process SIGKILLed while it
owns an incident: test_agent_process_killed.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import nats.errors
import pytest

from aiops.platform import Platform
from aiops.settings import Settings
from events import subjects
from events.incident import Incident
from events.models import AuditRecord
from tests.agents.replica_support import Replica, executed, replicas
from tests.nats_cluster import NatsCluster
from tests.waiting import eventually

pytestmark = pytest.mark.slow

# The nodes without a job (two idle, two spares), two GPUs each: independent faults, one
# isolation each (a third fault on a node within a day would make it a repeat offender).
FAULTS = [(f"node-0{13 + i % 4}", i) for i in range(8)]
SETTLED = {"mitigated", "escalated", "suppressed", "resolved"}


def fleet_settings(url: str) -> Settings:
    return Settings(
        nats_url=url,
        js_replicas=3,
        http_port=0,
        embedded_agent=False,
        group_wait_s=0.2,
        max_isolations_per_hour=50,
        breaker_threshold_pct=100,
        max_out_of_service_pct=100,
        min_spares=0,
    )


@asynccontextmanager
async def fleet(tmp_path: Path, *, serve_http: bool = False) -> AsyncIterator[tuple[Platform, NatsCluster]]:
    with NatsCluster(tmp_path / "nats", size=3) as cluster:
        settings = fleet_settings(cluster.url)
        async with Platform(settings, data_dir=tmp_path, serve_http=serve_http, run_clock=False) as platform:
            platform.twin.advance(45 * 60)
            yield platform, cluster


async def serve(group: list[Replica]) -> None:
    for r in group:
        await r.agent.start(batch_size=4, idle_wait_s=0.1)
        r.watch()


async def settled(platform: Platform, count: int) -> list[Incident]:
    found: list[Incident] = []

    async def done() -> bool:
        try:
            incidents = await platform.store.list_incidents(limit=1000)
        except (TimeoutError, nats.errors.Error):
            return False  # the test's own read during a server's restart or a leader election
        found[:] = incidents
        return len(incidents) >= count and all(i.status in SETTLED for i in incidents)

    await eventually(done, within_s=120, what=f"{count} settled incidents")
    return found


async def test_three_agents_on_a_cluster_mitigate_each_fault_once(tmp_path: Path) -> None:
    async with fleet(tmp_path) as (platform, _), replicas(platform, 3) as group:
        await serve(group)
        for node, gpu in FAULTS:
            platform.twin.inject_xid(node, gpu, 79)
            platform.twin.advance(30)
        incidents = await settled(platform, len(FAULTS))
        isolations = await executed(platform, "isolate_gpu")
        for r in group:
            await r.agent.stop()

    assert len(incidents) == len(FAULTS)
    assert {i.status for i in incidents} == {"mitigated"}
    assert sorted((r.arguments["node"], r.arguments["gpu"]) for r in isolations) == sorted(FAULTS)


async def test_an_agent_dying_mid_flow_loses_no_fault_and_repeats_no_isolation(tmp_path: Path) -> None:
    async with fleet(tmp_path) as (platform, _), replicas(platform, 3) as group:
        await serve(group)
        for node, gpu in FAULTS[:4]:
            platform.twin.inject_xid(node, gpu, 79)
            platform.twin.advance(30)
        victim = group[0]
        await eventually(lambda: victim.agent.events_seen >= 1, within_s=30, what="the victim to take events")
        await victim.agent.stop()  # its consumer is gone; what it holds is held by its leases
        await victim.die()
        for node, gpu in FAULTS[4:]:
            platform.twin.inject_xid(node, gpu, 79)
            platform.twin.advance(30)
        incidents = await settled(platform, len(FAULTS))
        isolations = await executed(platform, "isolate_gpu")
        for r in group[1:]:
            await r.agent.stop()

    assert len(incidents) == len(FAULTS)
    assert {i.status for i in incidents} == {"mitigated"}
    assert sorted((r.arguments["node"], r.arguments["gpu"]) for r in isolations) == sorted(FAULTS)


async def test_a_nats_server_killed_and_restarted_mid_flow_leaves_each_fault_one_incident_and_one_isolation(
    tmp_path: Path,
) -> None:
    async with fleet(tmp_path) as (platform, cluster), replicas(platform, 3) as group:
        await serve(group)
        for node, gpu in FAULTS[:4]:
            platform.twin.inject_xid(node, gpu, 79)
            platform.twin.advance(30)
        await eventually(
            lambda: sum(r.agent.events_seen for r in group) >= 1,
            within_s=30,
            what="the agents to take events",
        )
        # The server leading `leases`: owners' renewals and takeovers run into the election.
        info = await platform.js.stream_info(f"KV_{subjects.BUCKET_LEASES}")
        assert info.cluster is not None and info.cluster.leader is not None
        victim = str(info.cluster.leader)
        cluster.kill(victim)
        for node, gpu in FAULTS[4:6]:  # while the server is down
            platform.twin.inject_xid(node, gpu, 79)
            platform.twin.advance(30)

        async def leases_elected() -> bool:
            try:
                now = await platform.js.stream_info(f"KV_{subjects.BUCKET_LEASES}")
            except (TimeoutError, nats.errors.Error):
                return False  # no leader yet
            return now.cluster is not None and now.cluster.leader not in (None, victim)

        await eventually(leases_elected, within_s=30, what="`leases` to elect another leader")
        await asyncio.to_thread(cluster.restart, victim)
        for node, gpu in FAULTS[6:]:
            platform.twin.inject_xid(node, gpu, 79)
            platform.twin.advance(30)
        incidents = await settled(platform, len(FAULTS))
        isolations: list[AuditRecord] = []

        async def audited() -> bool:
            # The gate's audit writes ride out the outage: they may land after the incident settled.
            try:
                isolations[:] = await executed(platform, "isolate_gpu")
            except (TimeoutError, nats.errors.Error):
                return False
            return len(isolations) >= len(FAULTS)

        await eventually(audited, within_s=60, what="every isolation in GPU_AUDIT")
        for r in group:
            await r.agent.stop()

    assert len(incidents) == len(FAULTS)
    assert {i.status for i in incidents} == {"mitigated"}
    assert sorted((r.arguments["node"], r.arguments["gpu"]) for r in isolations) == sorted(FAULTS)
