"""Benchmark: the worst kernel line — per-line parse time and event-loop stall under adversarial input.

Adversarial lines (each up to the kmsg service's 16 KB line limit): long runs of whitespace in every
field a pattern reads (``name=``, ``pid=``, after the PCI id, in the fallen-off-the-bus forms, in the
prefix), nested and unbalanced parentheses (Xid 154's recovery action), repeated keywords the
parser searches for (``previous Xid``, ``link``, ``Link``, ``[``), Unicode whitespace, commas.

Measures, per line:
- ``parse``: ``KmsgParser.feed`` (what ``aiops kmsg parse`` runs), CPU time, worst of ``REPEATS``;
- ``service``: ``KmsgProcessor.feed`` (decode, parse, build the event), the same way;
and, against a real nats-server, the longest event-loop stall while the kmsg service consumes four
copies of every adversarial line (a 1 ms ticker on the same loop records how late it ran), next to
the same measurement with benign lines of the same sizes: on a shared machine the difference, not
the absolute figure, is the parser's share (best of ``RUNS`` runs reported, every run written).
For contrast it times the old ``name=`` pattern on 16,000 spaces once (the issue's 5.5 s).

Writes ``evals/out/kmsg_worst_line.json`` and prints a table; never asserts.
Run: ``.venv/bin/python -m evals.benchmarks.kmsg_worst_line`` (add ``--no-before`` to skip the old pattern).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import nats

from aiops.nats_server import EmbeddedNats
from events import subjects
from events.kmsg_parser import MAX_LINE_CHARS, KmsgParser
from events.kmsg_service import MAX_LINE_BYTES, KmsgProcessor, KmsgService
from events.streams import ensure_jetstream

OUT = Path(__file__).resolve().parents[1] / "out" / "kmsg_worst_line.json"
REPEATS = 5
RUNS = 3
N = MAX_LINE_BYTES - 200  # room for the fixed text: every line stays under the service's limit
XID = "NVRM: Xid (PCI:0000:5d:00): "


def adversarial() -> dict[str, str]:
    """Lines at the service's limit; the prefix cases pad only up to the parser's cap so the driver
    message is still read (past the cap a line is cut and its tail never reaches a pattern)."""
    sp = " " * N
    pad = MAX_LINE_CHARS - 100
    return {
        "name= then 16 KB of spaces": f"{XID}13, pid=1, name={sp}x",
        "name= then spaces and tabs, no comma": f"{XID}13, pid=1, name=" + " \t" * (N // 2) + "x",
        "pid= then 16 KB of spaces": f"{XID}13, pid={sp}x",
        "spaces after the PCI id": "NVRM: Xid (PCI:0000:5d:00):" + sp + "79",
        "spaces after the code": f"{XID}79" + sp + "x",
        "fallen off: spaces before 'has'": "NVRM: GPU at PCI:0000:5d:00" + sp + "x",
        "fallen off: spaces and colons": "NVRM: GPU at PCI:0000:5d:00" + " :" * (N // 2) + "x",
        "three-line form: trailing spaces": "NVRM: The NVIDIA GPU 0000:2a:00.0" + sp + "x",
        "Xid 154: nested parens": f"{XID}154, " + "(" * (N // 2) + ")" * (N // 2),
        "Xid 154: open parens": f"{XID}154, " + "(" * N,
        "Xid 154: '(a)' repeated": f"{XID}154, " + "(a) " * (N // 4) + "x",
        "Xid 154: ') .' repeated": f"{XID}154, (x" + ") ." * (N // 3) + "x",
        "Xid 45: 'previous' repeated": f"{XID}45, " + "previous " * (N // 9),
        "Xid 45: previous + spaces": f"{XID}45, previous" + sp + "x",
        "Xid 74: 'link' + spaces": f"{XID}74, link" + sp + "x",
        "NVLink5 layout, spaces": f"{XID}149, NETIR_LINK_EVT" + sp + "Fatal XC0 i0 Link x",
        "NVLink5 layout, word chars": f"{XID}149, " + "A" * N + " XC",
        "SXid: Link + spaces": "SXid (PCI:0000:86:00.0): 12028, Non-fatal, Link" + sp + "x",
        "SXid: Data + spaces": "SXid (PCI:0000:86:00.0): 12028, Data" + sp + "x",
        "prefix: 4 KB of spaces": " " * pad + XID + "79, x",
        "prefix: '[' repeated": "[" * pad + XID + "79, x",
        "prefix: '[ ' repeated": "[ " * (pad // 2) + XID + "79, x",
        "prefix: '[ 1.' repeated": "[ 1." * (pad // 4) + XID + "79, x",
        "prefix: syslog-like words": "Aug 30 11:43:09 " + "host " * (pad // 5) + XID + "79, x",
        "prefix: host then spaces": "2026-11-29T07:35:00Z host" + " " * pad + "kernel: " + XID + "79, x",
        "prefix: dmesg -T words": "[Fri Aug 30 " * (pad // 12) + XID + "79, x",
        "cap: name= then spaces to the cap": f"{XID}13, pid=1, name=" + " " * pad + "x",
        "cap: Xid 154 parens to the cap": f"{XID}154, " + "(a) " * (pad // 4),
        "Unicode whitespace after name=": f"{XID}13, pid=1, name=" + "\u3000" * (N // 3) + "x",
        "commas": f"{XID}13, pid=1, name=" + "," * N,
        "quotes": f"{XID}13, pid=1, name=" + "'" * N,
    }


def worst_cpu_s(fn: Callable[[], object]) -> float:
    worst = 0.0
    for _ in range(REPEATS):
        start = time.thread_time()
        fn()
        worst = max(worst, time.thread_time() - start)
    return worst


def per_line(lines: dict[str, str]) -> dict[str, dict[str, float]]:
    received = datetime(2026, 11, 29, tzinfo=UTC)
    out: dict[str, dict[str, float]] = {}
    for name, line in lines.items():
        data = line.encode()
        out[name] = {
            "bytes": len(data),
            "parse_ms": worst_cpu_s(lambda line=line: KmsgParser().feed(line)) * 1000,  # type: ignore[misc]
            "service_ms": worst_cpu_s(
                lambda data=data: KmsgProcessor(lambda n, p: 0).feed("s", "c", "n", data, received)  # type: ignore[misc]
            )
            * 1000,
        }
    return out


async def loop_stall(url: str, lines: list[str]) -> dict[str, float]:
    """The longest delay of a 1 ms ticker while the kmsg service consumes ``lines``."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    await ensure_jetstream(js)
    service = KmsgService(js, gpu_index=lambda node, pci: 0)
    worst_late = 0.0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal worst_late
        loop = asyncio.get_running_loop()
        while not done.is_set():
            due = loop.time() + 0.001
            await asyncio.sleep(0.001)
            worst_late = max(worst_late, loop.time() - due)

    await service.start()
    tick = asyncio.create_task(ticker())
    start = time.perf_counter()
    for i, line in enumerate(lines):
        await js.publish(subjects.kmsg("sim-a", f"node-{i % 4}"), line.encode())
    while service.lines_seen < len(lines):  # noqa: ASYNC110 - a harness polling a counter
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - start
    done.set()
    await tick
    await service.stop()
    await nc.drain()
    return {
        "lines": len(lines),
        "longest_stall_ms": worst_late * 1000,
        "consumed_in_s": elapsed,
        "dead_lettered": service.dead_lettered,
        "failed_batches": service.failed_batches,
    }


def old_name_pattern_s() -> float:
    old = re.compile(r"name=(?P<name>[^,]*?)\s*(?:,\s*|$)")
    text = "name=" + " " * 16_000 + "x"
    start = time.perf_counter()
    old.match(text)
    return time.perf_counter() - start


def main() -> None:
    lines = adversarial()
    table = per_line(lines)
    hostile = [line for line in lines.values() for _ in range(4)]
    benign = [
        "kernel: [ 12.5] usb 1-1: new high-speed USB device " + "x" * (len(line) - 60) for line in hostile
    ]
    runs: dict[str, list[dict[str, float]]] = {"adversarial": [], "benign": []}
    for _ in range(RUNS):  # alternated, on a fresh server each: the machine's own noise shows in both
        for kind, batch in (("adversarial", hostile), ("benign", benign)):
            with tempfile.TemporaryDirectory() as tmp, EmbeddedNats(Path(tmp)) as server:
                runs[kind].append(asyncio.run(loop_stall(server.url, batch)))
    stall = min(runs["adversarial"], key=lambda r: r["longest_stall_ms"])
    before = None if "--no-before" in sys.argv else old_name_pattern_s()
    worst = max(table.items(), key=lambda kv: kv[1]["service_ms"])
    result = {
        "lines": table,
        "worst_line": worst[0],
        "worst_parse_ms": max(v["parse_ms"] for v in table.values()),
        "worst_service_ms": worst[1]["service_ms"],
        "loop": stall,
        "loop_runs_ms": {k: [r["longest_stall_ms"] for r in v] for k, v in runs.items()},
        "old_name_pattern_16k_spaces_s": before,
        "repeats": REPEATS,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    print(f"{'line':<40} {'bytes':>7} {'parse ms':>9} {'service ms':>11}")
    for name, row in table.items():
        print(f"{name:<40} {row['bytes']:>7.0f} {row['parse_ms']:>9.3f} {row['service_ms']:>11.3f}")
    print(
        f"\nworst per line: parse {result['worst_parse_ms']:.3f} ms, service {result['worst_service_ms']:.3f} ms "
        f"({worst[0]})\nevent loop under {stall['lines']} adversarial lines: longest stall "
        f"{stall['longest_stall_ms']:.1f} ms, {stall['dead_lettered']:.0f} dead-lettered, "
        f"{stall['failed_batches']:.0f} failed batches (best of {RUNS} runs)\n"
        f"longest stall per run, ms: adversarial {[round(r['longest_stall_ms'], 1) for r in runs['adversarial']]}, "
        f"benign lines of the same sizes {[round(r['longest_stall_ms'], 1) for r in runs['benign']]}"
    )
    if before is not None:
        print(f"old name= pattern on 16,000 spaces: {before:.2f} s")
    print(f"written to {OUT}")


if __name__ == "__main__":
    main()
