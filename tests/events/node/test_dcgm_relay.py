"""The node agent relays its dcgm-exporter (``aiops node --dcgm-exporter``) for a fleet without
Prometheus, and a control plane's DCGM detector reads the relays (``AIOPS_DCGM_SOURCE=nodes``): the
twin's exporter serves one node on loopback, NATS is a real nats-server. A report goes out when a
GPU's fields changed (or a resync is due), under the agent's node name; what is not a report of the
node its subject names is dead-lettered with its bytes, and the next report is read as usual."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from events import subjects
from events.dcgm_relay import DcgmReport, encode_report
from events.dead_letter import read_dead_letter
from events.detectors import DetectorService
from events.detectors.relay import RelaySource
from events.models import EccEvent, XidEvent, parse_event, utcnow
from events.node.agent import NodeAgent
from events.node.dcgm import DcgmRelay
from fleet import FleetSpec, FleetTwin
from tests.events.node.test_node_agent import Running, config
from tests.fleet.exporter_server import serving
from tests.waiting import eventually

pytestmark = pytest.mark.slow

NODE = "gpu-node-7"
"""The agent's node name (NODE_NAME); the twin's exporter calls the node node-010."""


async def test_a_relayed_exporter_fault_becomes_events_under_the_agents_node_name(
    nats_url: str, nc: NatsClient, js: JetStreamContext, tmp_path: Path
) -> None:
    twin = FleetTwin(FleetSpec.small(seed=7))
    (tmp_path / "kmsg").write_text("")
    relay = RelaySource(js, "sim-a")
    await relay.start()
    service = DetectorService(nc, js, cluster="sim-a", clock=twin.now, dcgm_source=relay)
    async with serving(twin) as base:
        agent = NodeAgent(
            config(
                nats_url,
                tmp_path,
                inventory=False,
                dcgm_exporter=f"{base}/metrics?node=node-010",
                dcgm_interval_s=0.05,
            )
        )
        assert agent.dcgm is not None
        dcgm = agent.dcgm
        running = Running(agent)
        try:
            await eventually(lambda: relay.reports >= 1, within_s=20, what="the first report relayed")
            assert await service.scrape() == 0  # the baseline: nothing to report
            scrapes = dcgm.counts.scrapes
            await eventually(lambda: dcgm.counts.scrapes > scrapes + 2, what="more scrapes")
            assert dcgm.counts.published == 1  # nothing changed: nothing sent

            twin.inject_ecc("node-010", 1, "remap_pending")
            found: list[int] = []

            async def detected() -> bool:
                found.append(await service.scrape())
                return sum(found) >= 2

            await eventually(detected, within_s=20, what="the relayed remap pending detected")
        finally:
            await running.close()
        await relay.stop()

    assert dcgm.counts.published == 2 and dcgm.counts.scrape_failures == 0
    assert agent.counts().dcgm_relayed == 2
    sub = await js.pull_subscribe(subjects.events_all(), durable=None)
    events = [parse_event(m.data) for m in await sub.fetch(2, timeout=5)]
    [ecc] = [e for e in events if isinstance(e, EccEvent)]
    [xid] = [e for e in events if isinstance(e, XidEvent)]
    assert (ecc.node, ecc.gpu, ecc.findings) == (NODE, 1, ["remap_pending"])
    assert (xid.node, xid.xid) == (NODE, 63)


async def test_an_exporter_that_cannot_be_read_and_a_lost_nats_are_counted_never_fatal(
    js: JetStreamContext,
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    relay = DcgmRelay(f"http://127.0.0.1:{port}/metrics", cluster="sim-a", node=NODE, timeout_s=1)
    assert await relay.once(js) is False
    assert await relay.once(None) is False
    assert (relay.counts.scrapes, relay.counts.scrape_failures, relay.counts.published) == (2, 2, 0)

    twin = FleetTwin(FleetSpec.small(seed=7))
    async with serving(twin) as base:
        relay = DcgmRelay(f"{base}/metrics?node=node-003", cluster="sim-a", node=NODE)
        assert await relay.once(None) is False  # NATS down: nothing sent, counted
        assert await relay.once(js) is True
        assert await relay.once(js) is False  # unchanged
        relay.resync_s = 0
        assert await relay.once(js) is True  # a resync is due: sent though unchanged
    assert (relay.counts.publish_failures, relay.counts.published) == (1, 2)


def good_report(node: str = NODE) -> bytes:
    return encode_report(DcgmReport(cluster="sim-a", node=node, time=utcnow(), gpus=[]))


async def test_a_message_that_is_not_a_report_of_its_node_is_dead_lettered_and_the_next_is_read(
    js: JetStreamContext,
) -> None:
    relay = RelaySource(js, "sim-a")
    await relay.start()
    subject = subjects.dcgm("sim-a", NODE)
    poison = [
        b"\xff\xfe not json \x80",
        json.dumps({"cluster": "sim-a", "node": NODE, "time": "2026-11-29T07:35:00", "gpus": []}).encode(),
        good_report("gpu-node-8"),  # valid, but another node's: the subject lies
        json.dumps({"cluster": "sim-a", "node": NODE, "time": "2026-11-29T07:35:00Z",
                    "gpus": [{"gpu": -1, "metrics": {"DCGM_FI_DEV_ECC_DBE_VOL_TOTAL": "many"}}]}).encode(),
    ]  # fmt: skip
    for data in poison:
        await js.publish(subject, data)
    await js.publish(subject, good_report())
    await eventually(lambda: relay.reports == 1 and relay.dead_lettered == 4, what="4 refused, 1 read")
    assert [r.node for r in await relay.read()] == []  # a report of no GPUs: read, nothing to compare
    await relay.stop()

    sub = await js.pull_subscribe("gpu.dlq.dcgm", durable=None)
    letters = [read_dead_letter(m) for m in await sub.fetch(4, timeout=5)]
    assert [d.payload for d in letters] == poison
    assert all(d.source == "dcgm" and d.subject == subject and d.reason for d in letters)
    assert "the subject names another node" in letters[2].reason


async def test_a_restarted_control_plane_starts_from_each_nodes_last_report(js: JetStreamContext) -> None:
    for node in ("n1", "n2"):
        for _ in range(3):
            await js.publish(subjects.dcgm("sim-a", node), good_report(node))
    relay = RelaySource(js, "sim-a")
    await relay.start()
    await eventually(lambda: relay.reports >= 2, what="the last report of each node")
    assert relay.reports == 2
    await relay.stop()
