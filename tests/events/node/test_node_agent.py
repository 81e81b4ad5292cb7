"""The node agent against a real nats-server, fed a file in /dev/kmsg's record format: every line
arrives once, in order, across an agent restart and a NATS restart; a sequence gap is reported."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy

from aiops.nats_server import EmbeddedNats
from events import subjects
from events.inventory import NodeInventory, inventory_bucket, inventory_key
from events.node.agent import NodeAgent, NodeAgentConfig
from tests.waiting import eventually

BOOT = "6c1f4b5e-2b0a-4d53-9b84-0d2f7c0f3a11"
XID = "NVRM: Xid (PCI:0000:3b:00): 79, pid=2211, name=python, GPU has fallen off the bus."


def record(seq: int, message: str, *props: str) -> str:
    return f"3,{seq},{1_000_000 + seq * 1000},-;{message}\n" + "".join(f" {p}\n" for p in props)


def write(path: Path, seqs: range, *, skip: set[int] = frozenset()) -> list[int]:  # type: ignore[assignment]
    """Append records ``seqs`` (every tenth an Xid with device-property continuation lines)."""
    written = []
    with path.open("a") as f:
        for seq in seqs:
            if seq in skip:
                continue
            if seq % 10 == 0:
                f.write(record(seq, XID, "SUBSYSTEM=pci", "DEVICE=+pci:0000:3b:00.0"))
            else:
                f.write(record(seq, f"usb 1-1: line {seq}"))
            written.append(seq)
    return written


def config(url: str, tmp: Path, **kw: object) -> NodeAgentConfig:
    boot = tmp / "boot_id"
    if not boot.exists():
        boot.write_text(BOOT + "\n")
    return NodeAgentConfig(
        nats_url=url,
        cluster="sim-a",
        node="gpu-node-7",
        state_dir=tmp / "state",
        kmsg_path=tmp / "kmsg",
        boot_id_path=boot,
        status_interval_s=3600,
        **kw,  # type: ignore[arg-type]
    )


async def stored_lines(url: str) -> list[tuple[str, str]]:
    """(Nats-Msg-Id, line) of everything in GPU_KMSG, in stream order."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(subjects.STREAM_KMSG)
        total = info.state.messages
        if not total:
            return []
        sub = await js.pull_subscribe(
            "gpu.kmsg.>", stream=subjects.STREAM_KMSG, config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        )
        out: list[tuple[str, str]] = []
        while len(out) < total:
            for m in await sub.fetch(min(500, total - len(out)), timeout=5):
                out.append(((m.headers or {})["Nats-Msg-Id"], m.data.decode()))
        await sub.unsubscribe()
        return out
    finally:
        await nc.close()


class Running:
    def __init__(self, agent: NodeAgent) -> None:
        self.agent, self.stop = agent, asyncio.Event()
        self.task = asyncio.create_task(agent.run(self.stop))

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 20)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[EmbeddedNats]:
    nats_server = EmbeddedNats(tmp_path / "nats")
    nats_server.start()
    yield nats_server
    nats_server.stop()


def seqs_of(stored: list[tuple[str, str]]) -> list[int]:
    return [int(msg_id.split(":")[1]) for msg_id, _ in stored]


async def test_ships_every_record_once_in_order_with_continuations_and_reports_a_gap(
    server: EmbeddedNats, tmp_path: Path
) -> None:
    written = write(tmp_path / "kmsg", range(1, 201), skip={57, 58, 59})
    running = Running(NodeAgent(config(server.url, tmp_path)))
    await eventually(lambda: running.agent.shipped == len(written), within_s=20, what="all lines shipped")
    await running.close()

    stored = await stored_lines(server.url)
    assert seqs_of(stored) == written
    assert all(msg_id.startswith(BOOT + ":") for msg_id, _ in stored)
    xid_line = dict(stored)[f"{BOOT}:10"]
    assert xid_line.endswith(XID) and xid_line.startswith("[    1.010000]")
    cursor = running.agent.spool.cursor
    assert (cursor.gaps, cursor.missed, cursor.last_seq) == (1, 3, 200)


async def test_a_restarted_agent_neither_loses_nor_repeats_a_line(
    server: EmbeddedNats, tmp_path: Path
) -> None:
    kmsg = tmp_path / "kmsg"
    written = write(kmsg, range(1, 101))
    first = Running(NodeAgent(config(server.url, tmp_path)))
    await eventually(lambda: first.agent.shipped == 100, within_s=20, what="first 100 shipped")
    await first.close()

    written += write(kmsg, range(101, 151))  # the kernel logged on while the agent was down
    second = Running(NodeAgent(config(server.url, tmp_path)))  # re-reads the file from its start
    await eventually(lambda: second.agent.shipped == 50, within_s=20, what="the 50 new lines shipped")
    await second.close()

    assert second.agent.duplicates == 0  # the cursor skipped what was shipped; nothing was re-sent
    assert seqs_of(await stored_lines(server.url)) == written


async def test_a_nats_restart_mid_ship_loses_nothing(server: EmbeddedNats, tmp_path: Path) -> None:
    kmsg = tmp_path / "kmsg"
    written = write(kmsg, range(1, 51))
    running = Running(NodeAgent(config(server.url, tmp_path)))
    await eventually(lambda: running.agent.shipped == 50, within_s=20, what="first 50 shipped")

    server.stop()
    written += write(kmsg, range(51, 301))  # logged during the outage: spooled on disk
    await eventually(lambda: running.agent.spool.pending == 250, within_s=20, what="outage lines spooled")
    server.start()  # same port, same JetStream store

    await eventually(lambda: running.agent.spool.pending == 0, within_s=30, what="spool flushed")
    await running.close()
    assert seqs_of(await stored_lines(server.url)) == written
    assert running.agent.spool.cursor.dropped == 0


async def test_a_full_spool_drops_and_counts_the_lines_it_cannot_hold(tmp_path: Path) -> None:
    nowhere = EmbeddedNats(tmp_path / "gone")
    nowhere.start()
    url = nowhere.url
    nowhere.stop()  # NATS is down from the start
    write(tmp_path / "kmsg", range(1, 41))
    running = Running(NodeAgent(config(url, tmp_path, spool_max_lines=25)))
    await eventually(lambda: running.agent.spool.cursor.last_seq == 40, within_s=20, what="all 40 read")
    await running.close()
    assert (running.agent.spool.pending, running.agent.spool.cursor.dropped) == (25, 15)


async def test_a_new_boot_starts_a_new_sequence(server: EmbeddedNats, tmp_path: Path) -> None:
    kmsg = tmp_path / "kmsg"
    write(kmsg, range(1, 21))
    first = Running(NodeAgent(config(server.url, tmp_path)))
    await eventually(lambda: first.agent.shipped == 20, within_s=20, what="boot 1 shipped")
    await first.close()

    kmsg.unlink()
    write(kmsg, range(1, 11))  # after a reboot the kernel numbers from the start again
    (tmp_path / "boot_id").write_text("0f0e0d0c-0000-4000-8000-000000000002\n")
    second = Running(NodeAgent(config(server.url, tmp_path)))
    await eventually(lambda: second.agent.shipped == 10, within_s=20, what="boot 2 shipped")
    await second.close()
    ids = [msg_id for msg_id, _ in await stored_lines(server.url)]
    assert len(ids) == 30 and ids[-1] == "0f0e0d0c-0000-4000-8000-000000000002:10"


async def test_inventory_without_a_driver_is_absent_and_says_why(
    server: EmbeddedNats, tmp_path: Path
) -> None:
    write(tmp_path / "kmsg", range(1, 3))
    running = Running(NodeAgent(config(server.url, tmp_path)))
    await eventually(lambda: running.agent.shipped == 2, within_s=20, what="lines shipped")
    await running.agent.report()
    await running.close()
    nc = await nats.connect(server.url)
    try:
        entry = await (await inventory_bucket(nc.jetstream())).get(inventory_key("sim-a", "gpu-node-7"))
        inventory = NodeInventory.model_validate_json(entry.value or b"")
    finally:
        await nc.close()
    assert inventory.gpus == [] and inventory.nvml.startswith("NVML unavailable")
    assert inventory.boot_id == BOOT and inventory.agent.shipped == 2
