"""Benchmark: 1, 2 and 3 triage-agent replicas (separate processes) on a 3-node NATS cluster.

One run, one loopback cluster (``aiops.nats_cluster``, JetStream replicas 3). For each replica
count the JetStream state is wiped, the platform starts in this process (twin, MCP over HTTP, no
agent of its own) and ``aiops up --agents N``'s supervisor starts N ``aiops agent`` processes. Then:

1. **Throughput.** The agents are paused (SIGSTOP), a backlog of ``--backlog`` benign repeated
   Xids from 32 noisy GPUs is published, and a raw nats-py pull consumer (``fetch(256)``, an ack
   per message, its own durable) drains it once: the raw figure on the same cluster. Then the
   agents continue (SIGCONT) and the time until the shared ``triage`` consumer has everything
   acknowledged gives their events/s.
2. **First action.** Under a background of ``--rate`` events/s (another process, as detectors
   would be) probe Xid 79 events arrive on fresh GPUs; for each, the wall time from publishing it
   to the twin executing ``isolate_gpu`` for that GPU (the runbook's first mutation).
3. **Counts**, so the figure can be re-read after the shared-correlation work lands: incidents,
   Xid 79 incidents per probe, ``isolate_gpu`` executions and GPUs isolated twice or more,
   ``GPU_AUDIT`` records.

CPU seconds (user + system, from /proc) are recorded per process and phase: each agent, the
platform (this process), the background loader and each nats-server. This machine has 2 cores
shared by everything above: more replicas cannot scale past them, and the CPU figures show where
the time went.

Writes ``evals/out/replicas.json`` and ``evals/out/replicas.md``.
Run: ``.venv/bin/python -m evals.benchmarks.replicas [--counts 1,2,3 --backlog 20000 --rate 500]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import signal
import statistics
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from nats.js import JetStreamContext

from agents.store import IncidentStore
from aiops.agent_replicas import AgentReplicas
from aiops.nats_cluster import NatsCluster
from aiops.platform import Platform
from aiops.settings import Settings
from contracts.tools import ActionChange
from evals.benchmarks.replicas_report import markdown
from evals.benchmarks.replicas_support import (
    Cpu,
    drained,
    event,
    load_process,
    publish_backlog,
    raw_consume,
    wipe_jetstream,
)
from events import subjects
from events.publish import publish_events
from fleet import FleetSpec
from mcp_server.backends.twin.backend import TwinBackend

OUT = Path(__file__).resolve().parents[1] / "out"
NODES = 256


def platform_settings(url: str) -> Settings:
    # The safety limits are the operators' to set; here they are out of the way, or the breaker
    # would (rightly) stop isolating after a fifth of the fleet and the probes would measure a denial.
    return Settings(
        nats_url=url,
        js_replicas=3,
        http_port=0,
        metrics_port=0,
        embedded_agent=False,
        planner="rules",
        max_isolations_per_hour=100_000,
        breaker_threshold_pct=100,
        max_out_of_service_pct=100,
    )


def spec() -> FleetSpec:
    """``NODES`` nodes whose clock reads the wall time once advanced 45 minutes (jobs running)."""
    start = datetime.now(UTC) - timedelta(minutes=45)
    return FleetSpec.sized(NODES, seed=5).model_copy(update={"epoch": start})


async def one_count(cluster: NatsCluster, count: int, args: argparse.Namespace) -> dict[str, Any]:
    isolations: Counter[tuple[str, int]] = Counter()
    isolated_at: dict[tuple[str, int], float] = {}
    original = TwinBackend.isolate_gpu

    async def timed(self: TwinBackend, node: str, gpu: int, reason: str, actor: str) -> ActionChange:
        isolated_at.setdefault((node, gpu), time.perf_counter())
        isolations[(node, gpu)] += 1
        return await original(self, node, gpu, reason, actor)

    TwinBackend.isolate_gpu = timed  # type: ignore[method-assign]
    rng = random.Random(count)
    settings = platform_settings(cluster.url)
    nats_pids = {f"nats-{name}": node.proc.pid for name, node in cluster.nodes.items() if node.proc}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with Platform(settings, spec=spec(), data_dir=Path(tmp), run_clock=False) as p:
                p.twin.advance(45 * 60)
                stop = asyncio.Event()
                env = {
                    **os.environ,
                    "AIOPS_JS_REPLICAS": "3",
                    "AIOPS_PLANNER": "rules",
                    "AIOPS_LOG_FORMAT": "text",
                }
                replicas = AgentReplicas.for_platform(
                    count,
                    nats_url=p.nats_url,
                    mcp_url=p.http_url,
                    token=p.agent_token,
                    agent_id="bench-agent",
                    base_env=env,
                )
                replicas.log_dir = args.agent_logs / f"{count}-replicas"
                supervisor = asyncio.create_task(replicas.run(stop))
                try:
                    await _wait_agents(p.js, count)
                    pids = {r.name: r.pid for r in replicas.replicas if r.pid is not None}
                    nodes = [n.name for n in p.twin.nodes.values() if not n.spare]
                    candidates = [(n, rng.randrange(8)) for n in nodes]
                    rng.shuffle(candidates)
                    noisy = [candidates.pop() for _ in range(32)]
                    result: dict[str, Any] = {"replicas": count, "agent_pids": pids}
                    result["throughput"] = await _throughput(p, pids, nats_pids, noisy, args)
                    await _settled(p)  # the backlog's incidents planned: probes do not queue behind them
                    result["first_action"] = await _first_action(
                        p, pids, nats_pids, noisy, candidates, isolated_at, args
                    )
                    result["counts"] = await _counts(p.js, isolations, result["first_action"]["probes"])
                    result["agent_restarts"] = sum(r.starts - 1 for r in replicas.replicas)
                finally:
                    stop.set()
                    await supervisor
    finally:
        TwinBackend.isolate_gpu = original  # type: ignore[method-assign]
    return result


async def _wait_agents(js: JetStreamContext, count: int, within_s: float = 180.0) -> None:
    """Until ``count`` agents wait on the shared consumer (each holds a pull request open)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            info = await js.consumer_info(subjects.STREAM_EVENTS, "triage")
            if (info.num_waiting or 0) >= count:
                return
        except Exception:  # not created yet
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{count} agents did not start consuming within {within_s:.0f}s")


async def _settled(p: Platform, within_s: float = 120.0) -> None:
    """Until no incident is open (planning) any more, or ``within_s`` passed."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline and await p.store.list_incidents(statuses=["open"]):  # noqa: ASYNC110
        await asyncio.sleep(0.1)


async def _throughput(
    p: Platform,
    pids: dict[str, int],
    nats_pids: dict[str, int],
    noisy: list[tuple[str, int]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    for pid in pids.values():
        os.kill(pid, signal.SIGSTOP)
    try:
        last_seq = await publish_backlog(p.js, p.twin.name, noisy, args.backlog)
        raw = await raw_consume(p.js, args.backlog, durable="raw-bench")
    finally:
        cpu = Cpu({**pids, **nats_pids, "platform": os.getpid()})
        start = time.perf_counter()
        for pid in pids.values():
            os.kill(pid, signal.SIGCONT)
    while not await drained(p.js, "triage", last_seq):  # noqa: ASYNC110 - polling the server
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - start
    return {
        "backlog_events": args.backlog,
        "raw_jetstream_pull_events_per_s": round(raw),
        "agents_events_per_s": round(args.backlog / elapsed),
        "agents_vs_raw": round(args.backlog / elapsed / raw, 3),
        "seconds": round(elapsed, 2),
        "cpu_s": cpu.spent(),
    }


async def _first_action(
    p: Platform,
    pids: dict[str, int],
    nats_pids: dict[str, int],
    noisy: list[tuple[str, int]],
    candidates: list[tuple[str, int]],
    isolated_at: dict[tuple[str, int], float],
    args: argparse.Namespace,
) -> dict[str, Any]:
    loader = load_process(
        multiprocessing.get_context("spawn"), p.nats_url, p.twin.name, noisy, args.rate, args.seconds
    )
    loader.start()
    cpu = Cpu({**pids, **nats_pids, "platform": os.getpid(), "loader": loader.pid or 0})
    probes: dict[tuple[str, int], float] = {}
    start = time.perf_counter()
    while time.perf_counter() - start < args.seconds and candidates:
        node, gpu = candidates.pop()
        p.twin.inject_xid(node, gpu, 79)  # the fault's effect on the twin
        probes[(node, gpu)] = time.perf_counter()
        await publish_events(p.js, [event(p.twin.name, node, gpu, 79, f"probe-{node}-{gpu}", p.twin.now())])
        await asyncio.sleep(1 / args.probes_per_s)
    await asyncio.to_thread(loader.join)  # joining on the loop would stall the platform
    deadline = time.perf_counter() + 60
    while time.perf_counter() < deadline and not all(k in isolated_at for k in probes):  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    spent = cpu.spent()
    latencies = sorted((isolated_at[k] - t0) * 1000 for k, t0 in probes.items() if k in isolated_at)
    q = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) >= 2 else latencies * 99
    return {
        "background_rate_events_per_s": args.rate,
        "seconds": args.seconds,
        "probes": len(probes),
        "probes_acted_on": len(latencies),
        "first_action_ms_p50": round(q[49], 1) if q else None,
        "first_action_ms_p99": round(q[98], 1) if q else None,
        "first_action_ms_max": round(latencies[-1], 1) if latencies else None,
        "cpu_s": spent,
    }


async def _counts(js: JetStreamContext, isolations: Counter[tuple[str, int]], probes: int) -> dict[str, Any]:
    store = await IncidentStore.open(js)
    incidents = await store.list_incidents(limit=1_000_000)
    audit = await js.stream_info(subjects.STREAM_AUDIT)
    return {
        "incidents": len(incidents),
        "xid79_incidents": sum(1 for i in incidents if 79 in i.xids),
        "probes": probes,
        "isolate_gpu_executions": sum(isolations.values()),
        "gpus_isolated": len(isolations),
        "gpus_isolated_twice_or_more": sum(1 for n in isolations.values() if n > 1),
        "audit_records": audit.state.messages,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    runs = []
    with (
        tempfile.TemporaryDirectory(prefix="aiops-replicas-") as tmp,
        NatsCluster(Path(tmp), size=3) as cluster,
    ):
        for count in args.counts:
            await wipe_jetstream(cluster.url)
            print(f"-- {count} replica(s)", flush=True)
            runs.append(await one_count(cluster, count, args))
    return {
        "machine_cpus": os.cpu_count(),
        "nats_servers": 3,
        "js_replicas": 3,
        "fleet_nodes": NODES,
        "note": "all processes share this machine's CPUs: replicas cannot scale past them; read cpu_s",
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--counts", default="1,2,3", help="replica counts, in order")
    parser.add_argument("--backlog", type=int, default=20_000, help="events of the throughput backlog")
    parser.add_argument("--rate", type=float, default=500.0, help="background events/s while probing")
    parser.add_argument("--seconds", type=float, default=15.0, help="probing time per replica count")
    parser.add_argument("--probes-per-s", type=float, default=4.0)
    parser.add_argument(
        "--agent-logs", type=Path, default=OUT / "replicas-agent-logs", help="each replica's log lines"
    )
    args = parser.parse_args()
    args.counts = [int(c) for c in args.counts.split(",")]
    result = asyncio.run(run(args))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "replicas.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (OUT / "replicas.md").write_text(table)
    print(table)
    print(f"written {OUT / 'replicas.json'}, {OUT / 'replicas.md'}")


if __name__ == "__main__":
    main()
