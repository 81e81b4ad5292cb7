"""The performance suite's table: every benchmark's headline figures next to the issue's targets.

Reads what the benchmarks of ``make bench`` wrote into ``evals/out/`` and writes ``bench.md`` (the
table) and ``bench.json`` (the same figures). A benchmark that has not run shows as missing: this
reports, it never measures or invents anything.

Run: ``.venv/bin/python -m evals.benchmarks.report``
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "out"


@dataclass
class Row:
    benchmark: str
    figure: str
    value: str
    target: str = ""
    met: str = ""


def _load(name: str) -> dict[str, Any] | None:
    path = OUT / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _met(ok: bool) -> str:
    return "yes" if ok else "NO"


def _agent(d: dict[str, Any]) -> list[Row]:
    share = d["agent_vs_raw_ack_each"]
    return [
        Row(
            "agent_throughput",
            "raw JetStream pull-consume (ack each), events/s",
            f"{d['raw_jetstream_pull_ack_each_events_per_s']:,}",
        ),
        Row(
            "agent_throughput",
            "agent pipeline (validate, correlate, persist), events/s",
            f"{d['agent_events_per_s']:,}",
        ),
        Row("agent_throughput", "agent / raw", f"{share:.0%}", ">= 60%", _met(share >= 0.6)),
        Row(
            "agent_throughput",
            f"storm of {d['events']:,} events: incidents (root causes)",
            f"{d['incidents']} ({d['root_incidents']})",
        ),
        Row(
            "agent_throughput",
            "agent peak RSS, MB (growth during the storm)",
            f"{d['agent_rss_peak_mb']} ({d['agent_rss_growth_during_storm_mb']})",
        ),
    ]


def _first(d: dict[str, Any]) -> list[Row]:
    p99 = d["first_action_ms_p99"]
    return [
        Row("first_action", "background load, events/s", f"{d['background_rate_events_per_s']:,.0f}"),
        Row("first_action", "probes acted on", f"{d['probes_acted_on']}/{d['probes']}"),
        Row("first_action", "event to first action p50, ms", f"{d['first_action_ms_p50']:.0f}"),
        Row("first_action", "event to first action p99, ms", f"{p99:.0f}", "< 250", _met(p99 < 250)),
    ]


def _mcp(d: dict[str, Any]) -> list[Row]:
    rows = []
    # "server": the tool's own cost (no MCP client); "in_process": through the real MCP client in
    # memory, which validates every result against the tool's output schema.
    for transport, target in (("server", None), ("in_process", 1.0), ("stdio", 5.0), ("http", None)):
        for tool, r in d["results"].get(transport, {}).items():
            single = tool == "describe_node"
            goal = f"< {target:g}" if single and target else ""
            rows.append(
                Row(
                    "mcp_latency",
                    f"{tool} over {transport.replace('_', '-')}, p50 / p99 ms",
                    f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f}",
                    goal,
                    _met(r["p50_ms"] < target) if goal and target else "",
                )
            )
    return rows


def _kmsg(d: dict[str, Any]) -> list[Row]:
    return [
        Row("kmsg_path", "parser, mixed kernel lines/s", f"{d['parse_mixed_lines_per_s']:,.0f}"),
        Row(
            "kmsg_path",
            "kmsg service (NATS in, events out), mixed lines/s",
            f"{d['mixed_10pct_gpu']['service_lines_per_s']:,.0f}",
        ),
        Row(
            "kmsg_path",
            "raw JetStream publish, lines/s",
            f"{d['mixed_10pct_gpu']['jetstream_publish_lines_per_s']:,.0f}",
        ),
    ]


def _worst_line(d: dict[str, Any]) -> list[Row]:
    stall = d["loop"]["longest_stall_ms"]
    return [
        Row(
            "kmsg_worst_line",
            "worst adversarial line, service path, ms (CPU)",
            f"{d['worst_service_ms']:.3f}",
        ),
        Row(
            "kmsg_worst_line",
            "longest event-loop stall under adversarial lines, ms",
            f"{stall:.1f}",
            "< 50",
            _met(stall < 50),
        ),
    ]


def _twin(d: dict[str, Any]) -> list[Row]:
    return [
        Row(
            "twin_speed",
            f"{name.replace('_', ' ')}: simulated GPU-h per wall s",
            f"{r['simulated_gpu_hours_per_wall_s']:,.0f}",
        )
        for name, r in d.items()
    ]


def _claude(d: dict[str, Any]) -> list[Row]:
    return [
        Row(
            "claude_planner",
            f"{name} ({s.get('decided_by', '?')}): calls, tokens in/out, $, median s",
            f"{s['calls']}, {s.get('input_tokens', 0):,}/{s.get('output_tokens', 0):,}, "
            f"{s.get('cost_usd', 0):.3f}, {s.get('wall_s_median', 0):.3f}",
        )
        for name, s in d.get("scenarios", {}).items()
        if isinstance(s, dict) and "calls" in s
    ]


def _replicas(d: dict[str, Any]) -> list[Row]:
    rows = []
    for run in d["runs"]:
        t, f, c = run["throughput"], run["first_action"], run["counts"]
        n = run["replicas"]
        rows += [
            Row(
                "replicas",
                f"{n} agent process(es): events/s (raw pull on the same cluster)",
                f"{t['agents_events_per_s']:,} ({t['raw_jetstream_pull_events_per_s']:,})",
            ),
            Row(
                "replicas",
                f"{n} agent process(es): first action p50 / p99 ms",
                f"{f['first_action_ms_p50']} / {f['first_action_ms_p99']}",
            ),
            Row(
                "replicas",
                f"{n} agent process(es): Xid 79 incidents / probes; GPUs isolated twice+",
                f"{c['xid79_incidents']} / {c['probes']}; {c['gpus_isolated_twice_or_more']}",
                "= probes; 0",
                _met(c["xid79_incidents"] == c["probes"] and c["gpus_isolated_twice_or_more"] == 0),
            ),
        ]
    return rows


SECTIONS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "agent_throughput": _agent,
    "first_action": _first,
    "mcp_latency": _mcp,
    "kmsg_path": _kmsg,
    "kmsg_worst_line": _worst_line,
    "twin_speed": _twin,
    "claude_planner": _claude,
    "replicas": _replicas,
}


def build() -> list[Row]:
    rows: list[Row] = []
    for name, section in SECTIONS.items():
        data = _load(name)
        if data is None:
            rows.append(Row(name, "not run", "—"))
            continue
        try:
            rows += section(data)
        except (KeyError, TypeError, ValueError) as exc:
            rows.append(Row(name, f"unreadable figures ({exc!r})", "—"))
    return rows


def main() -> None:
    rows = build()
    machine = f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()}"
    lines = [
        "# gpu-aiops performance suite",
        "",
        f"Machine: {machine}. Produced by `make bench`; each benchmark's own JSON in this folder has the details.",
        "",
        "| benchmark | figure | value | target | met |",
        "|---|---|---|---|---|",
        *(f"| {r.benchmark} | {r.figure} | {r.value} | {r.target} | {r.met} |" for r in rows),
        "",
    ]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bench.md").write_text("\n".join(lines))
    (OUT / "bench.json").write_text(
        json.dumps({"machine": machine, "rows": [asdict(r) for r in rows]}, indent=2)
    )
    print("\n".join(lines))
    print(f"written {OUT / 'bench.md'}")


if __name__ == "__main__":
    main()
