"""A NATS server dying mid-storm never ends triage: on a 3-node JetStream cluster (replicas 3) the
server leading GPU_EVENTS is killed while Xid 79 faults are injected, and started again; on a single
server, the server is killed and restarted on its store. Every fault is mitigated exactly once (one
isolation per GPU in GPU_AUDIT), no event is lost, and the agent's consumer keeps pulling.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import nats.errors
import pytest

from agents.consumer import ACK_WAIT_S
from aiops.demo import wait_for_incidents
from aiops.platform import Platform
from events import subjects
from tests.agents.safety_support import trained
from tests.nats_cluster import NatsCluster
from tests.waiting import eventually

pytestmark = pytest.mark.slow

# Nodes without a job (two idle, two spares; none kept in reserve): each fault is one isolation,
# whatever the others do; at most two per node (a third within a day is a repeat offender).
FAULTS = [
    ("node-013", 0),
    ("node-014", 1),
    ("node-015", 2),
    ("node-016", 3),
    ("node-013", 4),
    ("node-014", 5),
]


def platform_on(cluster: NatsCluster, tmp_path: Path, replicas: int) -> AbstractAsyncContextManager[Platform]:
    return trained(tmp_path, nats_url=cluster.url, js_replicas=replicas)


async def audit_records(platform: Platform) -> list[dict[str, object]]:
    sub = await platform.js.pull_subscribe("gpu.audit.>", durable=None)
    info = await platform.js.stream_info(subjects.STREAM_AUDIT)
    records: list[dict[str, object]] = []
    while len(records) < info.state.messages:
        records += [
            json.loads(m.data) for m in await sub.fetch(info.state.messages - len(records), timeout=5)
        ]
    await sub.unsubscribe()
    return records


def inject(platform: Platform, faults: list[tuple[str, int]]) -> None:
    for node, gpu in faults:
        platform.twin.inject_xid(node, gpu, 79)
        platform.twin.advance(60)


async def run_with_a_fault(
    platform: Platform,
    fault: Callable[[], str],
    outage: Callable[[str], Awaitable[None]],
    restart: Callable[[str], None],
) -> float:
    """Inject faults before, during and after a server's death; returns the seconds from the kill
    until the agent's consumer fetched successfully again."""
    consumer = platform.agent.consumer
    assert consumer is not None
    inject(platform, FAULTS[:2])
    await eventually(
        lambda: platform.agent.events_seen >= 2, within_s=30, what="the first faults reach the agent"
    )
    victim = fault()
    killed_at = time.monotonic()
    before = consumer.probe.ok_total
    inject(platform, FAULTS[2:4])  # while the server is down
    await outage(victim)  # what the platform must have run into before the server comes back
    await asyncio.to_thread(restart, victim)  # the platform's loops keep running meanwhile
    inject(platform, FAULTS[4:])
    await eventually(
        lambda: (
            consumer.probe.ok_total > before
            and consumer.probe.last_ok is not None
            and consumer.probe.last_ok > killed_at
        ),
        within_s=60,
        what="the agent's consumer to pull again",
    )
    resumed_s = (consumer.probe.last_ok or killed_at) - killed_at
    incidents = await wait_for_incidents(platform, len(FAULTS), timeout_s=180)

    for i in incidents:
        if i.status != "mitigated":
            print(i.id, i.status, [(e.what, e.detail) for e in i.timeline])
    assert sorted(i.status for i in incidents) == ["mitigated"] * len(FAULTS)
    isolations: list[tuple[str, int]] = []

    async def audited() -> bool:
        # The guard's audit write rides out NATS faults too: its records may land after the incident,
        # and the restarted server's GPU_AUDIT may still be electing a leader when the test reads it.
        try:
            records = await audit_records(platform)
        except (TimeoutError, nats.errors.Error):
            return False
        isolations[:] = [
            (r["arguments"]["node"], r["arguments"]["gpu"])  # type: ignore[index]
            for r in records
            if r["tool"] == "isolate_gpu" and r["ok"] and not r["dry_run"] and not r["replayed"]
        ]
        return len(isolations) >= len(FAULTS)

    await eventually(audited, within_s=60, what="every isolation in GPU_AUDIT")
    assert sorted(isolations) == sorted(FAULTS)  # each fault mitigated exactly once
    assert {(r.node, r.gpu) for r in platform.twin.isolations_since(platform.twin.spec.epoch)} == set(FAULTS)
    # No event lost: every kernel line was shipped, every event consumed and acknowledged.
    assert platform.shipper.dropped == 0

    async def all_acknowledged() -> bool:
        # Each event is acknowledged on its own, fire-and-forget: an ack lost in the outage leaves
        # its event pending until it is redelivered (after ack_wait) and acknowledged again.
        info = await platform.js.consumer_info(subjects.STREAM_EVENTS, "triage")
        return (info.num_pending, info.num_ack_pending) == (0, 0)

    await eventually(all_acknowledged, within_s=ACK_WAIT_S + 30, what="every event acknowledged")
    assert consumer.running and platform.kmsg.consumer.running
    print(f"\nconsumer pulled again {resumed_s:.2f} s after the kill; {consumer.fetch_errors} failed fetches")
    return resumed_s


async def test_killing_the_server_leading_gpu_events_in_a_three_node_cluster_loses_no_fault(tmp_path):
    with NatsCluster(tmp_path / "nats", size=3) as cluster:
        async with platform_on(cluster, tmp_path, replicas=3) as platform:
            info = await platform.js.stream_info(subjects.STREAM_EVENTS)
            assert info.config.num_replicas == 3 and info.cluster is not None

            def kill_leader() -> str:
                leader = str(info.cluster.leader)  # type: ignore[union-attr]
                cluster.kill(leader)
                return leader

            async def new_leader(victim: str) -> None:
                async def elected() -> bool:
                    try:
                        now = await platform.js.stream_info(subjects.STREAM_EVENTS)
                    except (TimeoutError, nats.errors.Error):
                        return False  # no leader yet
                    return now.cluster is not None and now.cluster.leader not in (None, victim)

                await eventually(elected, within_s=30, what="GPU_EVENTS to elect another leader")

            await run_with_a_fault(platform, kill_leader, new_leader, cluster.restart)


async def test_a_single_server_restarted_on_its_store_loses_no_fault(tmp_path):
    with NatsCluster(tmp_path / "nats", size=1) as server:

        def kill() -> str:
            server.kill("n1")
            return "n1"

        async with platform_on(server, tmp_path, replicas=1) as platform:

            async def lines_held(victim: str) -> None:
                shipper = platform.shipper
                shipper.send_timeout_s = 1.0  # give up waiting for lost acks sooner than in production
                await eventually(lambda: shipper.retries >= 1, within_s=30, what="a failed shipment, held")

            await run_with_a_fault(platform, kill, lines_held, server.restart)
