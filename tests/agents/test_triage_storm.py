"""A storm through the whole agent on a real nats-server: ~5,000 events from a 128-node fleet
under 4 leaf switches become as many incidents as root causes, and the switch gets no node action."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aiops.platform import Platform
from aiops.settings import Settings
from evals.storm import BAD_LEAF, Storm, build_storm, storm_spec
from events.incident import Incident
from tests.waiting import eventually

SETTLED = frozenset({"mitigated", "suppressed", "escalated", "resolved", "awaiting_approval"})


@pytest.fixture
async def storm_platform(tmp_path: Path) -> AsyncIterator[Platform]:
    # The twin's clock runs (5 simulated minutes a wall second) so restarts and resets finish; its
    # 960 ranks beat every 2 simulated minutes.
    settings = Settings(http_port=0, group_wait_s=1.0, speed=300, heartbeat_interval_s=120)
    async with Platform(settings, spec=storm_spec(), data_dir=tmp_path, serve_http=False) as p:
        p.twin.advance(45 * 60)
        yield p


async def publish(platform: Platform, storm: Storm) -> int:
    futures = [await platform.js.publish_async(subject, data) for subject, data in storm.payloads()]
    await asyncio.gather(*futures)
    return len(futures)


async def settled(platform: Platform, expected_seen: int) -> list[Incident]:
    await eventually(
        lambda: platform.agent.events_seen >= expected_seen, within_s=60, what="the agent to see the storm"
    )

    async def all_settled() -> bool:
        incidents = await platform.store.list_incidents(limit=1000)
        return bool(incidents) and all(i.status in SETTLED for i in incidents)

    await eventually(all_settled, within_s=60, what="every incident to settle")
    await platform.agent.drain()
    return await platform.store.list_incidents(limit=1000)


@pytest.mark.slow
async def test_a_storm_of_5000_events_becomes_one_incident_per_root_cause(storm_platform):
    storm = build_storm(t0=storm_platform.twin.now())
    assert len(storm.events) >= 5000
    sent = await publish(storm_platform, storm)
    incidents = await settled(storm_platform, sent)

    roots = [i for i in incidents if i.folded_into is None]
    assert sorted((i.kind, i.entity) for i in roots) == sorted((r.kind, r.entity) for r in storm.root_causes)
    # Every event is accounted for: grouped into an incident, dead-lettered, or a clearing signal
    # with nothing to clear (the twin's own detectors add a few while the clock runs).
    agent = storm_platform.agent
    assert agent.dead_lettered == len(storm.malformed)
    assert (
        sum(i.event_count for i in incidents)
        == agent.events_seen - agent.dead_lettered - agent.events_ignored
    )

    [switch] = [i for i in roots if i.kind == "switch"]
    assert switch.root_cause is not None and switch.root_cause.entity_id == BAD_LEAF
    assert switch.status == "escalated" and switch.actions == []
    assert {"job-07", "job-08"} <= set(switch.affected_jobs) <= storm.switch_jobs
    assert set(switch.affected_nodes) <= storm.switch_nodes
    folded = [i for i in incidents if i.folded_into is not None]
    assert folded and all(i.folded_into == switch.id and i.status == "suppressed" for i in folded)
    assert {i.id for i in folded} <= set(switch.folded)


@pytest.mark.slow
async def test_the_storm_gets_no_per_node_action_under_the_switch_and_bounded_records(storm_platform):
    storm = build_storm(t0=storm_platform.twin.now())
    sent = await publish(storm_platform, storm)
    incidents = await settled(storm_platform, sent)
    twin = storm_platform.twin

    for incident in incidents:
        for action in incident.actions:
            assert action.arguments.get("node") not in storm.switch_nodes, (incident.title, action)
            assert action.arguments.get("job") not in storm.switch_jobs, (incident.title, action)
        # A storm cannot bloat a record: ids and join notes are capped, the counts keep going.
        assert len(incident.event_ids) <= 100 and len(incident.timeline) <= 80
    isolated = {(r.node, r.gpu) for r in twin.isolations_since(twin.spec.epoch)}
    assert not {node for node, _ in isolated} & storm.switch_nodes
    assert all(twin.job(job).restarts == 0 for job in storm.switch_jobs)
    assert not any(twin.node(n).cordoned for n in storm.switch_nodes)
    # The actions the storm did earn: the GPUs at fault, not their neighbours.
    assert {("node-110", 4), ("node-030", 1)} <= isolated
    assert len(storm_platform.agent.correlator) < 200
