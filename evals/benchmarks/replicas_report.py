"""The markdown table of evals/out/replicas.json (evals/benchmarks/replicas.py)."""

from __future__ import annotations

from typing import Any


def _agents_cpu(cpu: dict[str, float]) -> str:
    agents = [v for k, v in cpu.items() if k.startswith("bench-agent")]
    nats = sum(v for k, v in cpu.items() if k.startswith("nats-"))
    return f"{'+'.join(f'{v:.1f}' for v in agents)} / {cpu.get('platform', 0):.1f} / {nats:.1f} (wall {cpu['wall']:.1f})"


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# Agent replicas on a {result['nats_servers']}-node NATS cluster (JetStream R{result['js_replicas']}), "
        f"{result['machine_cpus']} CPUs",
        "",
        "| replicas | raw pull events/s | agents events/s | vs raw | first action p50 / p99 ms "
        "| probes acted | incidents (Xid 79 / probes) | isolate executions (GPUs twice+) | audit records "
        "| CPU s backlog: agents / platform / nats |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in result["runs"]:
        t, f, c = run["throughput"], run["first_action"], run["counts"]
        lines.append(
            f"| {run['replicas']} | {t['raw_jetstream_pull_events_per_s']} | {t['agents_events_per_s']} "
            f"| {t['agents_vs_raw']} | {f['first_action_ms_p50']} / {f['first_action_ms_p99']} "
            f"| {f['probes_acted_on']}/{f['probes']} | {c['incidents']} ({c['xid79_incidents']} / {c['probes']}) "
            f"| {c['isolate_gpu_executions']} ({c['gpus_isolated_twice_or_more']}) | {c['audit_records']} "
            f"| {_agents_cpu(t['cpu_s'])} |"
        )
    lines += ["", f"Note: {result['note']}.", ""]
    return "\n".join(lines)
