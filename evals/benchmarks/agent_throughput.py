"""Benchmark: events per second through the triage agent during a storm, next to raw JetStream.

On one nats-server, in one run, over the same events in ``GPU_EVENTS`` (the storm of
``evals.storm``, scaled up):

- raw: nats-py JetStream pull-consume — ``fetch(256)`` and an ack for every message (and, for
  reference, acking only the last of each batch under ``AckPolicy.ALL``);
- agent: the triage agent's event path as it runs in production — its durable consumer, pydantic
  validation of every event, correlation (dedupe, sympathy, topology, repeat offenders), and the
  incident store (JetStream KV, compare-and-set, a change published per write). Mitigation is left
  out (it runs beside the stream, per incident, and is not what a storm stresses);
- memory: the agent process's peak RSS while it consumes, and the peak of Python allocations
  (tracemalloc) at two storm sizes — bounded means the bigger storm does not need more.

Writes ``evals/out/agent_throughput.json`` and prints a table.
Run: ``.venv/bin/python -m evals.benchmarks.agent_throughput [--scale 6]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import nats
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from agents.ownership import Coordination
from agents.planner import RulesPlanner
from agents.store import IncidentStore
from agents.triage import TriageAgent
from aiops.detection import twin_fabric
from aiops.nats_server import EmbeddedNats
from contracts.client import ToolResult, ToolSpec
from evals.storm import build_storm, storm_spec
from events import subjects
from events.streams import ensure_jetstream
from fleet import FleetTwin
from runbooks.engine import RunbookEngine
from runbooks.library import RunbookLibrary
from runbooks.state import KvRunStore

OUT = Path(__file__).resolve().parents[1] / "out" / "agent_throughput.json"
BATCH = 256
AGENT_BATCH = 1024


class _NoTools:
    async def call(self, tool: str, arguments: dict[str, Any]) -> ToolResult:
        return ToolResult(ok=False, text="not in this benchmark")

    async def read_only_tools(self) -> set[str]:
        return set()

    async def tool_names(self) -> set[str]:
        return set()

    async def tool_specs(self) -> list[ToolSpec]:
        return []


class _EventPathOnly(TriageAgent):
    """The agent without mitigation: consume, validate, correlate, persist."""

    def start_mitigation(self, incident_id: str) -> None:
        pass

    def _hold(self, incident_id: str) -> None:
        pass


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def publish(js: JetStreamContext, payloads: list[tuple[str, bytes]]) -> float:
    start = time.perf_counter()
    for i in range(0, len(payloads), 5000):
        futures = [await js.publish_async(s, d) for s, d in payloads[i : i + 5000]]
        await asyncio.gather(*futures)
    return len(payloads) / (time.perf_counter() - start)


async def raw_consume(
    js: JetStreamContext, total: int, *, durable: str, ack_all: bool, batch: int = BATCH
) -> float:
    policy = AckPolicy.ALL if ack_all else AckPolicy.EXPLICIT
    sub = await js.pull_subscribe(
        subjects.events_all(), durable=durable, config=ConsumerConfig(ack_policy=policy, max_ack_pending=-1)
    )
    seen, start = 0, time.perf_counter()
    while seen < total:
        msgs = await sub.fetch(batch, timeout=2)
        if ack_all:
            await msgs[-1].ack()
        else:
            for m in msgs:
                await m.ack()
        seen += len(msgs)
    elapsed = time.perf_counter() - start
    await sub.unsubscribe()
    return seen / elapsed


async def agent_consume(js: JetStreamContext, total: int, *, durable: str) -> dict[str, float]:
    tools = _NoTools()
    store = await IncidentStore.open(js)
    agent = _EventPathOnly(
        js=js,
        store=store,
        tools=tools,
        engine=RunbookEngine(tools, await KvRunStore.open(js), RunbookLibrary.load()),
        planner=RulesPlanner(),
        fabric=twin_fabric(FleetTwin(storm_spec())),
        # Correlation claims and incident leases in KV, shared with any other replica, as in production.
        coordination=await Coordination.open(js),
    )
    base_rss, peak_rss = rss_mb(), rss_mb()
    start = time.perf_counter()
    await agent.start(durable=durable, batch_size=AGENT_BATCH)
    while agent.events_seen < total:
        peak_rss = max(peak_rss, rss_mb())
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - start
    await agent.stop()
    incidents = await store.list_incidents(limit=10_000)
    return {
        "events_per_s": total / elapsed,
        "seconds": elapsed,
        "incidents": len(incidents),
        "root_incidents": sum(1 for i in incidents if i.folded_into is None),
        "dead_lettered": agent.dead_lettered,
        "rss_before_mb": base_rss,
        "rss_peak_mb": peak_rss,
        "correlator_entries": len(agent.correlator),
    }


async def reset_incidents(js: JetStreamContext) -> None:
    """Each agent pass starts from an empty incident store, as the first did."""
    await js.delete_key_value(subjects.BUCKET_INCIDENTS)
    await ensure_jetstream(js)


async def run_rounds(scale: float, rounds: int) -> dict[str, Any]:
    """Raw and agent passes, interleaved round by round over the same stream (fresh durables)."""
    storm = build_storm(scale=scale)
    payloads = storm.payloads()
    runs: dict[str, list[float]] = {}
    last_agent: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, EmbeddedNats(Path(tmp)) as server:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await ensure_jetstream(js)
        publish_rate = await publish(js, payloads)
        total = len(payloads)
        for r in range(rounds):
            passes: dict[str, Any] = {
                "raw_ack_each": raw_consume(js, total, durable=f"raw-each-{r}", ack_all=False),
                "raw_ack_all": raw_consume(js, total, durable=f"raw-all-{r}", ack_all=True),
                "raw_ack_each_1024": raw_consume(
                    js, total, durable=f"raw-1024-{r}", ack_all=False, batch=AGENT_BATCH
                ),
            }
            for name, coro in passes.items():
                runs.setdefault(name, []).append(await coro)
            await reset_incidents(js)
            result = await agent_consume(js, total, durable=f"agent-{r}")
            runs.setdefault("agent", []).append(result["events_per_s"])
            last_agent = result
        await nc.close()
    return {"events": total, "publish_per_s": publish_rate, "runs": runs, "agent": last_agent}


async def traced_agent(scale: float) -> dict[str, float]:
    """The agent alone under tracemalloc: the peak of Python allocations while it consumes."""
    payloads = build_storm(scale=scale).payloads()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedNats(Path(tmp)) as server:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await ensure_jetstream(js)
        await publish(js, payloads)
        tracemalloc.start()
        result = await agent_consume(js, len(payloads), durable="traced")
        result["python_alloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        result["events"] = len(payloads)
        tracemalloc.stop()
        await nc.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=6.0, help="storm size (1 = ~5,000 events)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved raw/agent rounds (medians reported)"
    )
    args = parser.parse_args()
    timed = asyncio.run(run_rounds(args.scale, args.rounds))
    small = asyncio.run(traced_agent(1.0))
    large = asyncio.run(traced_agent(args.scale))
    med = {name: statistics.median(rates) for name, rates in timed["runs"].items()}
    agent = timed["agent"]
    results = {
        "events": timed["events"],
        "rounds": args.rounds,
        "raw_jetstream_pull_ack_each_events_per_s": round(med["raw_ack_each"]),
        "raw_jetstream_pull_ack_all_events_per_s": round(med["raw_ack_all"]),
        "raw_jetstream_pull_ack_each_batch_1024_events_per_s": round(med["raw_ack_each_1024"]),
        "agent_events_per_s": round(med["agent"]),
        "agent_vs_raw_ack_each": round(med["agent"] / med["raw_ack_each"], 3),
        "agent_vs_raw_ack_each_batch_1024": round(med["agent"] / med["raw_ack_each_1024"], 3),
        "agent_vs_raw_ack_all": round(med["agent"] / med["raw_ack_all"], 3),
        "all_runs_events_per_s": {name: [round(r) for r in rates] for name, rates in timed["runs"].items()},
        "incidents": agent["incidents"],
        "root_incidents": agent["root_incidents"],
        "agent_rss_peak_mb": round(agent["rss_peak_mb"], 1),
        "agent_rss_growth_during_storm_mb": round(agent["rss_peak_mb"] - agent["rss_before_mb"], 1),
        "python_alloc_peak_mb": {
            f"{small['events']:.0f}_events": round(small["python_alloc_peak_mb"], 1),
            f"{large['events']:.0f}_events": round(large["python_alloc_peak_mb"], 1),
        },
        "correlator_entries_after": agent["correlator_entries"],
        "raw_batch": BATCH,
        "agent_batch": AGENT_BATCH,
        "max_rss_process_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    for key, value in results.items():
        print(f"{key:52} {value}")
    print(f"written {OUT}")


if __name__ == "__main__":
    main()
