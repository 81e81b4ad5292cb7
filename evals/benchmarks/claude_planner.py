"""Benchmark: what one incident costs the Claude planner, on scripted runs.

The real anthropic SDK talks to the loopback Messages API server the tests use too
(``evals/loopback_anthropic.py``), and the planner's read-only tool calls go to a real MCP
server over a fleet twin. Per scenario and incident: model calls, input and output tokens, dollars
at the configured model's price, and wall time (median and max over the repeats).

What the figures mean: token counts are the loopback's estimate (a quarter of the JSON characters
sent and returned), so input tokens measure the size of the prompts this code builds — system
prompt, skills, tool schemas, the fenced incident, tool outputs — resent on every step. Wall time
excludes the model's thinking (the loopback answers at once): it is the planner's own overhead,
the MCP tool calls and the HTTP round trips; add the model's latency per call for a real run.

Writes ``evals/out/claude_planner.json`` and prints a table.
Run: ``.venv/bin/python -m evals.benchmarks.claude_planner``
"""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mcp import Client

from agents.claude import ClaudeLimits, ClaudePlanner, make_client
from agents.claude.prompt import system_prompt
from agents.facts import gather_facts
from agents.summaries import ClaudeSummarizer
from contracts.client import McpToolClient
from evals.loopback_anthropic import (
    CHARS_PER_TOKEN,
    Hang,
    LoopbackMessagesServer,
    Raw,
    Turn,
    submit,
    text,
    tool_use,
)
from events.incident import Incident, RootCause
from fleet import FleetSpec, FleetTwin
from mcp_server.backends.twin.backend import TwinBackend
from mcp_server.deps import ServerDeps
from mcp_server.gate.audit import MemoryAudit
from mcp_server.gate.policy import PolicyGate, Principal
from mcp_server.identity import fixed_identity
from mcp_server.server import build_server
from runbooks.library import RunbookLibrary
from skills.skill_files import load_skills

OUT = Path(__file__).resolve().parents[1] / "out" / "claude_planner.json"
MODEL = "claude-sonnet-4-6"
REPEATS = 20
ANSWER: dict[str, Any] = {
    "diagnosis": "GPU 3 on node-003 fell off the PCIe bus (Xid 79) under train-01.",
    "root_cause_type": "gpu",
    "root_cause_id": "node-003/gpu3",
    "confidence": 0.92,
    "disposition": "mitigate",
    "runbooks": [
        {"runbook": "isolate-gpu", "params": {"node": "node-003", "gpu": 3}},
        {"runbook": "restart-from-checkpoint", "params": {"job": "train-01"}},
    ],
    "rationale": "Xid 79 is a hardware fault; the job stalled and has a recent checkpoint.",
}
READ = tool_use("describe_node", {"node": "node-003"})

SCENARIOS: dict[str, tuple[Callable[[], list[Turn]], dict[str, float]]] = {
    "answer at once": (lambda: [submit(**ANSWER)], {}),
    "investigate (3 reads) then answer": (
        lambda: [
            READ,
            tool_use("job_for_gpu", {"node": "node-003", "gpu": 3}),
            tool_use("checkpoint_status", {"job": "train-01"}),
            submit(**ANSWER),
        ],
        {},
    ),
    "ends without answer, forced retry": (lambda: [text("It is the GPU."), submit(**ANSWER)], {}),
    "planted instruction refused -> rules": (
        lambda: [
            tool_use("isolate_gpu", {"node": "node-001", "gpu": 0, "reason": "told so"}),
            submit(
                **{
                    **ANSWER,
                    "runbooks": [{"runbook": "isolate-gpu", "params": {"node": "node-001", "gpu": 0}}],
                }
            ),
        ],
        {},
    ),
    "runaway loop, step limit 8 -> rules": (lambda: [READ] * 20, {}),
    "malformed reply -> rules": (lambda: [Raw(200, b"not json")], {}),
    "no reply, wall limit 1 s -> rules": (lambda: [READ, Hang()], {"max_wall_s": 1.0}),
}


async def run_scenarios(server: LoopbackMessagesServer) -> dict[str, Any]:
    results: dict[str, Any] = {}
    agent = Principal(id="triage-agent", role="agent", kind="agent")
    library, skills = RunbookLibrary.load(), load_skills()
    anthropic = make_client("benchmark-key", server.url)
    for name, (turns, limits) in SCENARIOS.items():
        runs: list[dict[str, Any]] = []
        for _ in range(REPEATS):
            twin = FleetTwin(FleetSpec.small())
            twin.advance(2700)
            lines = twin.inject_xid("node-003", 3, 79)
            deps = ServerDeps(
                backend=TwinBackend(twin),
                gate=PolicyGate.from_directory(),
                identity=fixed_identity(agent),
                audit=MemoryAudit(),
            )
            async with Client(build_server(deps)) as client:
                tools = McpToolClient(client)
                incident = _incident(lines)
                facts = await gather_facts(tools, "node-003", 3, None)
                planner = ClaudePlanner(
                    anthropic,
                    tools,
                    library=library,
                    model=MODEL,
                    limits=ClaudeLimits(**limits),
                    skills=skills,
                )
                server.script(*turns())
                started = time.perf_counter()
                plan, outcome = await planner.decide(incident, facts)
                wall = time.perf_counter() - started
            runs.append(
                {
                    "planner": plan.planner,
                    "calls": outcome.usage.calls,
                    "input_tokens": outcome.usage.input_tokens,
                    "output_tokens": outcome.usage.output_tokens,
                    "cost_usd": outcome.usage.cost_usd,
                    "wall_s": wall,
                }
            )
        results[name] = _summarize(runs)
    results["summary (one call)"] = await _bench_summary(server, anthropic)
    await anthropic.close()
    return results


async def _bench_summary(server: LoopbackMessagesServer, anthropic: Any) -> dict[str, Any]:
    incident = _incident(["NVRM: Xid (PCI:0000:5d:00): 79, GPU has fallen off the bus."])
    summarizer = ClaudeSummarizer(anthropic, model=MODEL)
    walls = []
    for _ in range(REPEATS):
        server.script(
            summary=text("GPU 3 on node-003 fell off the bus; it is isolated and train-01 restarted.")
        )
        started = time.perf_counter()
        await summarizer.summarize(incident)
        walls.append(time.perf_counter() - started)
    last = server.requests[-1].body
    sent = len(json.dumps({k: last.get(k) for k in ("system", "messages")})) // CHARS_PER_TOKEN
    return {"runs": REPEATS, "calls": 1, "input_tokens": sent, "wall_s_median": statistics.median(walls)}


def _incident(lines: list[str]) -> Incident:
    incident = Incident(
        id="inc-bench",
        cluster="sim-a",
        kind="xid",
        title="Xid 79 GPU_HAS_FALLEN_OFF_THE_BUS on node-003 GPU 3",
        severity="critical",
        root_cause=RootCause(
            entity_type="gpu", entity_id="node-003/gpu3", confidence=0.5, evidence=lines[:2]
        ),
        xids=[79],
        event_count=len(lines),
        affected_nodes=["node-003"],
        affected_gpus=["node-003/3"],
    )
    for line in lines:
        incident.note("event", line)
    return incident


def _summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    walls = sorted(r["wall_s"] for r in runs)
    first = runs[0]
    return {
        "runs": len(runs),
        "decided_by": first["planner"],
        "calls": first["calls"],
        "input_tokens": first["input_tokens"],
        "output_tokens": first["output_tokens"],
        "cost_usd": round(first["cost_usd"], 5),
        "wall_s_median": statistics.median(walls),
        "wall_s_max": walls[-1],
    }


def main() -> None:
    for noisy in ("httpx2", "httpx", "mcp"):  # one INFO line per request otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("agents").setLevel(logging.ERROR)  # the fallbacks are the point here
    library, skills = RunbookLibrary.load(), load_skills()
    prompt_tokens = {
        kind: len(system_prompt(library, skills, kind)) // CHARS_PER_TOKEN for kind in ("xid", "hang")
    }
    with LoopbackMessagesServer() as server:
        results = asyncio.run(run_scenarios(server))
    report = {
        "model_priced_as": MODEL,
        "token_estimate": f"{CHARS_PER_TOKEN} characters per token",
        "system_prompt_tokens": prompt_tokens,
        "scenarios": results,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2))
    print(f"system prompt ~tokens: {prompt_tokens}")
    print(
        f"{'scenario':40} {'by':6} {'calls':>5} {'in tok':>8} {'out tok':>7} {'$':>8} {'wall med':>9} {'max':>7}"
    )
    for name, r in results.items():
        print(
            f"{name:40} {r.get('decided_by', '-'):6} {r['calls']:>5} {r['input_tokens']:>8,} "
            f"{r.get('output_tokens', 0):>7,} {r.get('cost_usd', 0):>8.4f} {r['wall_s_median']:>8.3f}s "
            f"{r.get('wall_s_max', r['wall_s_median']):>6.3f}s"
        )
    print(f"written {OUT}")


if __name__ == "__main__":
    main()
