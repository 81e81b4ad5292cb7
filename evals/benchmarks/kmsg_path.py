"""Benchmark: the parse-and-publish path (kernel lines → typed events in GPU_EVENTS).

Measures, against one real nats-server in the same run:
- parse only: ``KmsgParser`` over a mixed log (10% GPU lines), lines/s;
- raw JetStream publish of the same lines into GPU_KMSG (``publish_async``), lines/s — the ceiling
  of the shipper side;
- the kmsg service end to end: lines already in GPU_KMSG consumed by its batch pull consumer,
  parsed, and published as events with dedupe; lines/s and events/s.

Writes ``evals/out/kmsg_path.json`` and prints a table. Run: ``.venv/bin/python -m evals.benchmarks.kmsg_path``
"""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import time
from pathlib import Path

import nats

from aiops.nats_server import EmbeddedNats
from events import subjects
from events.kmsg_parser import KmsgParser
from events.kmsg_service import KmsgService
from events.streams import ensure_jetstream

OUT = Path(__file__).resolve().parents[1] / "out" / "kmsg_path.json"
NOISE = [
    "kernel: [{t:.6f}] eth0: renamed from veth{n}",
    "kernel: [{t:.6f}] IPv6: ADDRCONF(NETDEV_CHANGE): cali{n}: link becomes ready",
    'kernel: [{t:.6f}] audit: type=1400 audit({t:.3f}:{n}): apparmor="DENIED" operation="open"',
]
XIDS = [
    "kernel: [{t:.6f}] NVRM: Xid (PCI:0000:{bus}:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.",
    "kernel: [{t:.6f}] NVRM: Xid (PCI:0000:{bus}:00): 13, pid={n}, name=python3, Graphics SM Warp Exception on (GPC 1, TPC 2, SM 0): Out Of Range Address",
    "kernel: [{t:.6f}] NVRM: Xid (PCI:0000:{bus}:00): 31, pid={n}, name=python3, Ch 00000010, intr 00000000. MMU Fault: ENGINE GRAPHICS GPCCLIENT_T1_0 faulted @ 0x7f_12340000",
]
BUSES = ["18", "2a", "3a", "5d", "9a", "ab", "ba", "db"]


def make_log(n: int, gpu_share: float, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        t = 1000 + i * 0.001
        pool = XIDS if rng.random() < gpu_share else NOISE
        lines.append(rng.choice(pool).format(t=t, n=rng.randrange(1000, 99999), bus=rng.choice(BUSES)))
    return lines


def bench_parse(lines: list[str]) -> float:
    parser = KmsgParser()
    start = time.perf_counter()
    for line in lines:
        parser.feed(line)
    parser.flush()
    return len(lines) / (time.perf_counter() - start)


async def bench_nats(url: str, lines: list[str], nodes: int) -> dict[str, float]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await ensure_jetstream(js)
    start = time.perf_counter()
    futures = [
        await js.publish_async(subjects.kmsg("bench", f"node-{i % nodes:03d}"), line.encode())
        for i, line in enumerate(lines)
    ]
    await asyncio.gather(*futures)
    publish_rate = len(lines) / (time.perf_counter() - start)

    service = KmsgService(js, batch_size=512)
    start = time.perf_counter()
    await service.start()
    while service.lines_seen < len(lines):  # noqa: ASYNC110 - a harness polling a counter
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - start
    await service.stop()
    events = (await js.stream_info(subjects.STREAM_EVENTS)).state.messages
    await nc.close()
    return {
        "jetstream_publish_lines_per_s": publish_rate,
        "service_lines_per_s": len(lines) / elapsed,
        "service_events_per_s": events / elapsed,
        "events": events,
    }


def main() -> None:
    n = 100_000
    mixed = make_log(n, 0.10)
    gpu_only = make_log(20_000, 1.0, seed=2)
    results: dict[str, object] = {
        "lines": n,
        "parse_mixed_lines_per_s": bench_parse(mixed),
        "parse_gpu_lines_per_s": bench_parse(gpu_only),
    }
    with tempfile.TemporaryDirectory() as tmp, EmbeddedNats(Path(tmp)) as server:
        results["mixed_10pct_gpu"] = asyncio.run(bench_nats(server.url, mixed, nodes=64))
    with tempfile.TemporaryDirectory() as tmp, EmbeddedNats(Path(tmp)) as server:
        results["all_gpu_lines"] = asyncio.run(bench_nats(server.url, gpu_only, nodes=64))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2))
    for key, value in results.items():
        if isinstance(value, dict):
            for k, v in value.items():
                print(f"{key:18} {k:34} {v:12,.0f}")
        else:
            print(f"{key:53} {value:12,.0f}")
    print(f"written {OUT}")


if __name__ == "__main__":
    main()
