"""The kmsg service against a real nats-server: lines in, typed events out, bad input to the DLQ."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from nats.js import JetStreamContext

from events import subjects
from events.kmsg_service import HEADER_NODE, KmsgService
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
    dead = await fetch_all(js, "gpu.dlq.kmsg", 2)
    reasons = sorted(str(d["reason"]) for d in dead)
    assert reasons[0].startswith("line longer than") and reasons[1].startswith("not UTF-8")
    assert all(d["subject"] == "gpu.kmsg.sim-a.node-003" for d in dead)
    [event] = await fetch_all(js, "gpu.events.xid.>", 1)
    assert event["xid"] == 79


async def test_lines_without_gpu_content_produce_nothing(service, js):
    await js.publish(subjects.kmsg("sim-a", "node-003"), b"[ 12.5] usb 1-1: new high-speed USB device")
    await eventually(lambda: service.lines_seen == 1)
    assert (await js.stream_info(subjects.STREAM_EVENTS)).state.messages == 0
