"""End to end on the embedded platform with a real nats-server: kernel lines in, incident out."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aiops.demo import wait_for_incidents
from aiops.platform import Platform
from aiops.settings import Settings
from events import subjects
from events.dead_letter import read_dead_letter
from events.kmsg_service import HEADER_NODE


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    # The clock is driven by the test (no real-time runner), so the run is deterministic. One of the
    # two spares is above the reserve, so a lost GPU's node is swapped for it (every action that
    # consumes a spare answers to the reserve: a restart onto the reserve would wait for a person).
    settings = Settings(http_port=0, min_spares=1)
    async with Platform(settings, data_dir=tmp_path, serve_http=False, run_clock=False) as p:
        p.twin.advance(45 * 60)
        yield p


async def audit_records(platform: Platform) -> list[dict[str, object]]:
    sub = await platform.js.pull_subscribe("gpu.audit.>", durable=None)
    info = await platform.js.stream_info(subjects.STREAM_AUDIT)
    records = []
    while len(records) < info.state.messages:
        records += [
            json.loads(m.data) for m in await sub.fetch(info.state.messages - len(records), timeout=5)
        ]
    return records


async def test_an_xid_79_line_arriving_twice_is_mitigated_with_one_isolation_and_one_restart(platform):
    twin = platform.twin
    lines = twin.inject_xid("node-003", 3, 79)
    # The same lines arrive a second time (a log shipper retry, a replayed journal).
    for line in lines:
        await platform.js.publish(
            subjects.kmsg(twin.name, "node-003"), line.encode(), headers={HEADER_NODE: "node-003"}
        )

    [incident] = await wait_for_incidents(platform, 1, timeout_s=20)

    assert incident.status == "mitigated"
    assert incident.root_cause is not None and incident.root_cause.entity_id == "node-003/gpu3"
    assert incident.affected_jobs == ["train-01"]
    assert (
        incident.event_count == 1
    )  # the Xid 79 line and its fallen-off-the-bus report are one record; repeats deduped
    assert [(a.tool, a.decision, a.ok) for a in incident.actions] == [
        ("isolate_gpu", "allow", True),
        ("swap_spare", "allow", True),
        ("restart_from_checkpoint", "allow", True),
    ]
    assert incident.gpu_hours_lost > 0
    assert len(twin.isolations_since(twin.spec.epoch)) == 1
    job = twin.job("train-01")
    assert job.restarts == 1 and job.state in ("restarting", "running")
    assert "node-003" not in job.nodes

    mutations = [r for r in await audit_records(platform) if not r["dry_run"]]
    assert sorted(str(r["tool"]) for r in mutations) == [
        "isolate_gpu",
        "restart_from_checkpoint",
        "swap_spare",
    ]
    assert all(r["principal"] == "triage-agent" and r["decision"] == "allow" for r in mutations)


async def test_a_benign_xid_43_opens_a_suppressed_incident_and_changes_nothing(platform):
    twin = platform.twin
    twin.inject_xid("node-013", 5, 43, pid=4242, process="python3")
    [incident] = await wait_for_incidents(platform, 1, timeout_s=20)
    assert incident.status == "suppressed"
    assert incident.actions == []
    assert incident.plan is not None and incident.plan.disposition == "no_action"
    assert twin.isolations_since(twin.spec.epoch) == []
    assert await audit_records(platform) == []


async def test_a_malformed_event_goes_to_the_dead_letter_subject_and_the_agent_keeps_working(platform):
    await platform.js.publish("gpu.events.xid.sim-a.node-003", b'{"kind": "xid", "node": "node-003"}')
    twin = platform.twin
    twin.inject_xid("node-005", 1, 79)
    [incident] = await wait_for_incidents(platform, 1, timeout_s=20)
    assert incident.status == "mitigated"
    sub = await platform.js.pull_subscribe("gpu.dlq.events", durable=None)
    [dead] = await sub.fetch(1, timeout=5)
    letter = read_dead_letter(dead)
    assert "event_id" in letter.reason and letter.payload == b'{"kind": "xid", "node": "node-003"}'


async def test_a_blast_radius_denial_escalates_the_incident_and_isolates_nothing(tmp_path):
    settings = Settings(http_port=0, max_isolations_per_hour=0)
    async with Platform(settings, data_dir=tmp_path, serve_http=False, run_clock=False) as p:
        p.twin.advance(45 * 60)
        p.twin.inject_xid("node-003", 3, 79)
        [incident] = await wait_for_incidents(p, 1, timeout_s=20)
        assert incident.status == "escalated"
        assert [(a.tool, a.decision, a.ok) for a in incident.actions] == [("isolate_gpu", "deny", False)]
        assert "blast radius" in incident.timeline[-1].detail
        assert p.twin.isolations_since(p.twin.spec.epoch) == []
        assert p.twin.job("train-01").restarts == 0


async def test_two_gpus_of_one_node_failing_together_restart_the_job_once(platform):
    twin = platform.twin
    twin.inject_xid("node-003", 3, 79)
    twin.inject_xid("node-003", 5, 79)

    incidents = await wait_for_incidents(platform, 2, timeout_s=30)

    # The two incidents take turns on the node: the second plans from what the first left (the
    # node is no longer in the job's gang), so the job restarts once and both GPUs are isolated.
    assert sorted(i.status for i in incidents) == ["mitigated", "mitigated"]
    assert twin.job("train-01").restarts == 1
    assert {(r.node, r.gpu) for r in twin.isolations_since(twin.spec.epoch)} == {
        ("node-003", 3),
        ("node-003", 5),
    }
    restarts = [a for i in incidents for a in i.actions if a.tool == "restart_from_checkpoint" and a.ok]
    assert len(restarts) == 1


async def test_cleanup_xids_on_other_nodes_of_the_gang_fold_into_the_jobs_fault(platform):
    twin = platform.twin
    twin.inject_xid("node-003", 3, 79)
    [fault] = await wait_for_incidents(platform, 1, timeout_s=20)
    # The collective aborts: the driver cleans up train-01's processes on another member.
    twin.inject_xid("node-004", 0, 45)

    incidents = {i.id: i for i in await wait_for_incidents(platform, 2, timeout_s=20)}
    [cleanup] = [i for i in incidents.values() if i.id != fault.id]
    assert cleanup.folded_into == fault.id and cleanup.status == "suppressed"
    assert cleanup.actions == [] and "train-01" in cleanup.timeline[-1].detail
    assert incidents[fault.id].status == "mitigated"
    assert {r.node for r in twin.isolations_since(twin.spec.epoch)} == {"node-003"}
