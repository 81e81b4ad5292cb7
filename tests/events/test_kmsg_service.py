"""The kmsg service against a real nats-server: lines in, typed events out, bad input to the DLQ."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from nats.js import JetStreamContext
from nats.js.errors import ServiceUnavailableError

from events import kmsg_service, subjects
from events.dead_letter import Received, read_dead_letter
from events.kmsg_service import HEADER_NODE, KmsgService
from events.models import XidEvent
from fleet import FleetSpec, FleetTwin
from tests.waiting import eventually

LINE_79 = "2026-11-29T07:35:00.000000+00:00 node-003 kernel: NVRM: Xid (PCI:0000:5d:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus."
THREE_LINES = [
    "[Fri Aug 30 11:43:09 2024] NVRM: The NVIDIA GPU 0000:2a:00.0",
    "[Fri Aug 30 11:43:09 2024] NVRM: (PCI ID: 10de:2330) installed in this system has",
    "[Fri Aug 30 11:43:09 2024] NVRM: fallen off the bus and is not responding to commands.",
]


@pytest.fixture
async def service(js: JetStreamContext) -> AsyncIterator[KmsgService]:
    svc = KmsgService(js, gpu_index=lambda node, pci: {"0000:5d:00.0": 3}.get(pci))
    await svc.start()
    yield svc
    await svc.stop()


async def fetch_all(js: JetStreamContext, subject: str, expected: int) -> list[dict[str, object]]:
    sub = await js.pull_subscribe(subject, durable=None)
    got: list[dict[str, object]] = []
    while len(got) < expected:
        for msg in await sub.fetch(expected - len(got), timeout=10):
            got.append(json.loads(msg.data))
            await msg.ack()
    return got


async def fetch_dead(js: JetStreamContext, subject: str, expected: int) -> list[Received]:
    sub = await js.pull_subscribe(subject, durable=None)
    got: list[Received] = []
    while len(got) < expected:
        for msg in await sub.fetch(expected - len(got), timeout=10):
            got.append(read_dead_letter(msg))
            await msg.ack()
    return got


async def test_a_kernel_line_becomes_a_typed_xid_event_with_the_gpu_resolved(service, js):
    await js.publish(subjects.kmsg("sim-a", "node-003"), LINE_79.encode())
    [event] = await fetch_all(js, "gpu.events.xid.sim-a.node-003", 1)
    assert event["xid"] == 79 and event["gpu"] == 3 and event["pci_bus_id"] == "0000:5d:00.0"
    assert event["node"] == "node-003" and event["cluster"] == "sim-a" and event["raw"] == LINE_79
    assert event["time"].startswith("2026-11-29T07:35:00")


async def test_the_same_line_arriving_twice_becomes_one_event(service, js):
    for _ in range(2):
        await js.publish(subjects.kmsg("sim-a", "node-003"), LINE_79.encode())
    await eventually(lambda: service.lines_seen == 2, what="both lines consumed")
    info = await js.stream_info(subjects.STREAM_EVENTS)
    assert info.state.messages == 1


async def test_the_three_line_fallen_off_the_bus_form_is_one_xid_79(service, js):
    for line in THREE_LINES:
        await js.publish(subjects.kmsg("sim-a", "node-007"), line.encode())
    [event] = await fetch_all(js, "gpu.events.xid.>", 1)
    assert event["xid"] == 79 and event["fell_off_bus_without_xid"] is True
    assert event["pci_bus_id"] == "0000:2a:00.0"


async def test_a_node_name_with_dots_keeps_its_true_name_from_the_header(service, js):
    subject = subjects.kmsg("sim-a", "gpu17.dc1.example.com")
    assert subject == "gpu.kmsg.sim-a.gpu17_dc1_example_com"
    await js.publish(subject, LINE_79.encode(), headers={HEADER_NODE: "gpu17.dc1.example.com"})
    [event] = await fetch_all(js, "gpu.events.xid.>", 1)
    assert event["node"] == "gpu17.dc1.example.com"


async def test_bad_input_goes_to_the_dead_letter_subject_with_the_reason_and_the_service_keeps_going(
    service, js
):
    await js.publish(subjects.kmsg("sim-a", "node-003"), b"\xff\xfe NVRM: Xid garbage")
    await js.publish(subjects.kmsg("sim-a", "node-003"), b"NVRM: " + b"x" * 20_000)
    await js.publish(subjects.kmsg("sim-a", "node-003"), LINE_79.encode())
    dead = await fetch_dead(js, "gpu.dlq.kmsg", 2)
    by_reason = sorted(dead, key=lambda d: d.reason)
    assert by_reason[0].reason.startswith("line longer than") and by_reason[1].reason.startswith("not UTF-8")
    assert by_reason[0].payload == b"NVRM: " + b"x" * 20_000
    assert by_reason[1].payload == b"\xff\xfe NVRM: Xid garbage"
    assert all(d.subject == "gpu.kmsg.sim-a.node-003" and d.source == "kmsg" for d in dead)
    [event] = await fetch_all(js, "gpu.events.xid.>", 1)
    assert event["xid"] == 79


async def test_lines_without_gpu_content_produce_nothing(service, js):
    await js.publish(subjects.kmsg("sim-a", "node-003"), b"[ 12.5] usb 1-1: new high-speed USB device")
    await eventually(lambda: service.lines_seen == 1)
    assert (await js.stream_info(subjects.STREAM_EVENTS)).state.messages == 0


async def test_a_line_from_a_node_no_inventory_knows_is_an_event_with_the_gpu_unknown(js):
    twin = FleetTwin(FleetSpec.small(seed=3))  # its resolver raises for a node the fleet lacks
    gpu = twin.node("node-003").gpus[2]
    service = KmsgService(js, gpu_index=twin.gpu_index)
    await service.start()
    try:
        await js.publish(subjects.kmsg("sim-a", "node-999"), LINE_79.encode())
        known = LINE_79.replace("0000:5d:00", gpu.pci_bus_id.removesuffix(".0"))
        await js.publish(subjects.kmsg("sim-a", "node-003"), known.encode())
        events = sorted(await fetch_all(js, "gpu.events.xid.>", 2), key=lambda e: str(e["node"]))
    finally:
        await service.stop()
    assert (events[0]["node"], events[0]["gpu"]) == ("node-003", gpu.index)
    assert events[1]["node"] == "node-999" and "gpu" not in events[1] and events[1]["xid"] == 79
    assert service.processor.unresolved == 1 and service.failed_batches == 0


async def test_a_bad_subject_and_an_invalid_event_go_to_the_dead_letter_subject_and_the_next_line_proceeds(
    service, js
):
    await js.publish("gpu.kmsg.sim-a", LINE_79.encode())  # no node token
    await js.publish(subjects.kmsg("sim-a", "node-003"), LINE_79.encode(), headers={HEADER_NODE: ""})
    await js.publish(subjects.kmsg("sim-a", "node-004"), LINE_79.encode())
    dead = sorted(await fetch_dead(js, "gpu.dlq.kmsg", 2), key=lambda d: d.reason)
    assert dead[0].reason.startswith("invalid Xid event") and "node" in dead[0].reason
    assert dead[0].payload == LINE_79.encode()
    assert dead[1].reason.startswith("subject is not") and dead[1].subject == "gpu.kmsg.sim-a"
    assert dead[1].payload == LINE_79.encode()
    [event] = await fetch_all(js, "gpu.events.xid.>", 1)
    assert event["node"] == "node-004"


async def test_a_batch_whose_publish_fails_half_way_is_published_once_with_the_multi_line_state_intact(
    service, js, monkeypatch
):
    publish_events = kmsg_service.publish_events
    failures = {"left": 0}

    async def flaky(js_: JetStreamContext, events: list[XidEvent]) -> int:
        if events and failures["left"] > 0:
            failures["left"] -= 1
            await publish_events(js_, events[:1])  # half the batch made it before NATS went away
            raise ServiceUnavailableError()
        return await publish_events(js_, events)

    monkeypatch.setattr(kmsg_service, "publish_events", flaky)
    node = subjects.kmsg("sim-a", "node-007")
    for line in THREE_LINES[:2]:
        await js.publish(node, line.encode())
    await eventually(lambda: service.lines_seen == 2, what="the first two lines of the report")
    failures["left"] = 1
    await js.publish(node, THREE_LINES[2].encode())
    await js.publish(subjects.kmsg("sim-a", "node-003"), LINE_79.encode())
    await eventually(lambda: service.lines_seen >= 4, what="the batch after its redelivery")
    assert failures["left"] == 0  # the publish did fail half-way; the retry published the rest
    events = await fetch_all(js, "gpu.events.xid.>", 2)
    assert sorted(e["node"] for e in events) == ["node-003", "node-007"]
    assert (await js.stream_info(subjects.STREAM_EVENTS)).state.messages == 2
    assert (await js.stream_info(subjects.STREAM_DLQ)).state.messages == 0


async def test_a_line_that_looks_like_deeply_nested_json_is_read_as_a_line(service, js):
    # FastStream used to JSON-decode every body before the handler: 3,000 '[' raised RecursionError
    # and the batch was redelivered forever.
    await js.publish(subjects.kmsg("sim-a", "node-003"), b"[" * 3000 + b" NVRM: Xid")
    await js.publish(subjects.kmsg("sim-a", "node-004"), LINE_79.encode())
    [event] = await fetch_all(js, "gpu.events.xid.>", 1)
    assert event["node"] == "node-004"
    await eventually(lambda: service.lines_seen == 2, what="both lines consumed")
    assert service.failed_batches == 0
