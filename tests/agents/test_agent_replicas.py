"""Several triage agents on one NATS: one incident and one action per fault, whichever replica sees
its events, and a replica that dies mid-run is taken over once its lease expires.

Each replica has its own NATS connection and MCP session (``tests.agents.replica_support``); the
test hands events to them directly (``handle_payloads``), as the shared durable consumer would —
the same fault's events to different replicas, or to all of them (a redelivery)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from aiops.platform import Platform
from contracts.client import McpToolClient
from events.models import parse_event
from runbooks.state import KvRunStore, RunFenced
from tests.agents.replica_support import Blocking, drain_all, events_of, executed, replicas
from tests.agents.safety_support import trained
from tests.waiting import eventually

# Nodes without a job (two idle, two spares; none in reserve): each fault is one isolation.
FAULTS = [("node-013", 0), ("node-014", 1), ("node-015", 2), ("node-016", 3)]


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    async with trained(tmp_path, embedded_agent=False, group_wait_s=0.1) as p:
        yield p


def again(event: tuple[str, bytes], seconds: float) -> tuple[str, bytes]:
    """Another report of the same fault, a little later (a new event id)."""
    subject, data = event
    parsed = parse_event(data)
    later = parsed.model_copy(
        update={"event_id": f"{parsed.event_id}-again", "time": parsed.time + timedelta(seconds=seconds)}
    )
    return subject, later.model_dump_json().encode()


async def test_the_same_fault_seen_by_two_replicas_is_one_incident_with_one_isolation(
    platform: Platform,
) -> None:
    platform.twin.inject_xid("node-013", 0, 79)
    [first] = await events_of(platform, 1)
    async with replicas(platform, 2) as (a, b):
        await asyncio.gather(a.agent.handle_payloads([first]), b.agent.handle_payloads([again(first, 5)]))
        await drain_all([a.agent, b.agent])
        incidents = await platform.store.list_incidents()
        isolations = await executed(platform, "isolate_gpu")

    [incident] = incidents
    assert incident.status == "mitigated"
    assert incident.event_count == 2
    assert a.agent.joined_elsewhere + b.agent.joined_elsewhere == 1
    assert [(r.arguments["node"], r.arguments["gpu"]) for r in isolations] == [("node-013", 0)]


async def test_faults_redelivered_to_three_replicas_are_one_incident_and_one_isolation_each(
    platform: Platform,
) -> None:
    for node, gpu in FAULTS:
        platform.twin.inject_xid(node, gpu, 79)
        platform.twin.advance(60)
    events = await events_of(platform, len(FAULTS))
    async with replicas(platform, 3) as group:
        await asyncio.gather(*(r.agent.handle_payloads(events) for r in group))
        await drain_all([r.agent for r in group])
        incidents = await platform.store.list_incidents()
        isolations = await executed(platform, "isolate_gpu")

    assert len(incidents) == len(FAULTS)
    assert {i.status for i in incidents} == {"mitigated"}
    assert sorted((r.arguments["node"], r.arguments["gpu"]) for r in isolations) == sorted(FAULTS)


async def test_a_replica_killed_mid_run_is_taken_over_after_its_lease_and_the_isolation_runs_once(
    platform: Platform,
) -> None:
    platform.twin.inject_xid("node-014", 1, 79)
    events = await events_of(platform, 1)
    frozen: list[Blocking] = []

    def freeze_first(n: int, tools: McpToolClient) -> McpToolClient:
        if n == 0:
            frozen.append(Blocking(tools, "isolate_gpu"))
            return frozen[0]
        return tools

    async with replicas(platform, 2, wrap=freeze_first) as (a, b):
        await a.agent.handle_payloads(events)
        await asyncio.wait_for(frozen[0].called.wait(), timeout=30)  # isolated; not recorded yet
        [incident] = await platform.store.list_incidents()
        owner = await b.agent.ownership.owner(incident.id)
        assert owner == a.agent.ownership.replica
        assert await b.agent.mitigation.recover() == 0  # a live peer's incident is not taken
        stale = await KvRunStore.open(a.nc.jetstream())
        stale_state = await stale.load(f"{incident.id}/isolate-gpu")
        await a.die()

        async def taken_over() -> bool:
            return await b.agent.mitigation.recover() > 0

        await eventually(taken_over, within_s=30, what="the other replica to take the incident over")
        await b.agent.drain()
        done = await platform.store.get_incident(incident.id)
        isolations = await executed(platform, "isolate_gpu")
        runs = await KvRunStore.open(platform.js)
        assert stale_state is not None
        with pytest.raises(RunFenced):  # the dead owner, were it to come back, writes no more
            await runs.save(stale_state)
        owner_after = await b.agent.ownership.owner(incident.id)

    assert done is not None and done.status == "mitigated"
    assert [(r.arguments["node"], r.arguments["gpu"]) for r in isolations] == [("node-014", 1)]
    assert owner_after is None  # released: nothing of it waits any more
