"""Benchmark: the node agent (``aiops node``) shipping a kernel log to a real nats-server.

- throughput: a file of N records in ``/dev/kmsg`` format (10% Xid lines with device-property
  continuation lines), read, spooled to disk and published with acks; lines/s and the agent's CPU
  seconds per 1,000 lines (= the share of one core it needs at 1,000 lines/s);
- continuity: the same agent stopped and started again mid-file, and NATS stopped and started again
  mid-ship (lines written during the outage): lines lost and lines stored twice, counted from the
  GPU_KMSG stream.

Writes ``evals/out/node_agent.json``. Run: ``.venv/bin/python -m evals.benchmarks.node_agent``
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from aiops.nats_server import EmbeddedNats
from events import subjects
from events.node.agent import NodeAgent, NodeAgentConfig

OUT = Path(__file__).resolve().parents[1] / "out" / "node_agent.json"
BOOT = "3a1c2e4f-0000-4000-8000-00000000b007"
XID = "NVRM: Xid (PCI:0000:5d:00): 79, pid=2211, name=python, GPU has fallen off the bus."


def append(path: Path, first: int, last: int) -> None:
    with path.open("a") as f:
        for seq in range(first, last + 1):
            if seq % 10 == 0:
                f.write(f"3,{seq},{seq * 1000},-;{XID}\n SUBSYSTEM=pci\n DEVICE=+pci:0000:5d:00.0\n")
            else:
                f.write(f"6,{seq},{seq * 1000},-;eth0: link becomes ready (seq {seq})\n")


def config(url: str, root: Path) -> NodeAgentConfig:
    (root / "boot_id").write_text(BOOT)
    return NodeAgentConfig(
        nats_url=url,
        cluster="bench",
        node="gpu-node-1",
        state_dir=root / "state",
        kmsg_path=root / "kmsg",
        boot_id_path=root / "boot_id",
        status_interval_s=3600,
        inventory=False,
    )


async def wait_for(check: object, limit_s: float = 300) -> None:
    deadline = time.monotonic() + limit_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("the agent did not get there")
        await asyncio.sleep(0.005)


async def stored_seqs(url: str) -> list[int]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    total = (await js.stream_info(subjects.STREAM_KMSG)).state.messages
    sub = await js.pull_subscribe(
        "gpu.kmsg.>",
        stream=subjects.STREAM_KMSG,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE),
    )
    out: list[int] = []
    while len(out) < total:
        for m in await sub.fetch(min(1000, total - len(out)), timeout=10):
            out.append(int((m.headers or {})["Nats-Msg-Id"].split(":")[1]))
    await nc.close()
    return out


async def throughput(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        append(root / "kmsg", 1, n)
        with EmbeddedNats(root / "nats") as server:
            agent, stop = NodeAgent(config(server.url, root)), asyncio.Event()
            cpu, wall = time.process_time(), time.perf_counter()
            task = asyncio.create_task(agent.run(stop))
            await wait_for(lambda: agent.shipped >= n)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            stop.set()
            await task
    return {
        "lines": n,
        "lines_per_s": round(n / wall),
        "cpu_s_per_1000_lines": round(cpu / (n / 1000), 4),
        "core_share_at_1000_lines_per_s_pct": round(100 * cpu / (n / 1000), 2),
    }


async def continuity(n: int) -> dict[str, int]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        kmsg = root / "kmsg"
        server = EmbeddedNats(root / "nats")
        server.start()
        try:
            append(kmsg, 1, n // 4)
            agent, stop = NodeAgent(config(server.url, root)), asyncio.Event()
            task = asyncio.create_task(agent.run(stop))
            await wait_for(lambda: agent.shipped >= n // 8)
            stop.set()  # agent restart mid-file
            await task
            resent = agent.duplicates
            append(kmsg, n // 4 + 1, n // 2)
            agent, stop = NodeAgent(config(server.url, root)), asyncio.Event()
            task = asyncio.create_task(agent.run(stop))
            await wait_for(lambda: agent.spool.cursor.last_seq >= n // 2 and agent.spool.pending == 0)
            server.stop()  # NATS restart mid-ship
            append(kmsg, n // 2 + 1, n)
            await wait_for(lambda: agent.spool.cursor.last_seq >= n)
            server.start()
            await wait_for(lambda: agent.spool.pending == 0)
            stop.set()
            await task
            resent += agent.duplicates
            seqs = await stored_seqs(server.url)
        finally:
            server.stop()
    return {
        "lines_written": n,
        "lines_stored": len(seqs),
        "lost": len(set(range(1, n + 1)) - set(seqs)),
        "stored_twice": len(seqs) - len(set(seqs)),
        "resent_and_deduplicated": resent,
        "in_order": int(seqs == sorted(seqs)),
    }


async def main() -> None:
    results = {"throughput": await throughput(50_000), "restarts": await continuity(20_000)}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    print(f"written {OUT}")


if __name__ == "__main__":
    asyncio.run(main())
