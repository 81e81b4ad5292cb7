"""Benchmark: how fast the fleet twin simulates, in simulated GPU-hours per wall-clock second.

Fleets of 1,024 and 16,384 GPUs (one training job per leaf switch, warm spares), with the failure
model on (published rates, lemons), with every rank's heartbeat delivered to a subscriber (as the
embedded platform runs it) and without (as a study that needs no detectors would); simulated time moves in 10-second ticks (the demo's tick) for one
simulated hour, or until ``--max-wall-s``. Writes ``evals/out/twin_speed.json``.

Run: ``.venv/bin/python -m evals.benchmarks.twin_speed``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from fleet import FleetSpec, FleetTwin, JobSpec

OUT = Path(__file__).resolve().parents[1] / "out" / "twin_speed.json"


def fleet(leaves: int, nodes_per_leaf: int = 16) -> FleetSpec:
    jobs = [
        JobSpec(
            name=f"job-{i:03d}",
            nodes=nodes_per_leaf - 1,
            step_time_s=4.0,
            checkpoint_interval_s=1800,
            checkpoint_write_s=20,
        )
        for i in range(leaves)
    ]
    return FleetSpec(leaf_switches=leaves, nodes_per_leaf=nodes_per_leaf, spare_nodes=leaves, jobs=jobs)


def measure(
    spec: FleetSpec, *, tick_s: float, sim_s: float, max_wall_s: float, heartbeats: bool
) -> dict[str, float]:
    twin = FleetTwin(spec)
    twin.enable_failures()
    beats = 0

    def count(_beat: object) -> None:
        nonlocal beats
        beats += 1

    unsubscribe = twin.subscribe_heartbeats(count) if heartbeats else (lambda: None)
    gpus = twin.cluster_gpu_count
    simulated, start = 0.0, time.perf_counter()
    while simulated < sim_s and time.perf_counter() - start < max_wall_s:
        twin.advance(tick_s)
        simulated += tick_s
    wall = time.perf_counter() - start
    unsubscribe()
    return {
        "gpus": gpus,
        "nodes": len(twin.nodes),
        "jobs": len(twin.jobs),
        "tick_s": tick_s,
        "simulated_s": simulated,
        "wall_s": round(wall, 3),
        "speedup_x_real_time": round(simulated / wall, 1),
        "simulated_gpu_hours_per_wall_s": round(gpus * simulated / 3600 / wall, 1),
        "heartbeats_per_wall_s": round(beats / wall),
        "faults_drawn": sum(1 for r in twin.history if r.kind == "fault"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tick-s", type=float, default=10.0)
    parser.add_argument("--sim-s", type=float, default=3600.0)
    parser.add_argument("--max-wall-s", type=float, default=60.0)
    args = parser.parse_args()
    results = {
        f"{spec.leaf_switches * spec.nodes_per_leaf * spec.gpus_per_node}_gpus_{mode}": measure(
            spec, tick_s=args.tick_s, sim_s=args.sim_s, max_wall_s=args.max_wall_s, heartbeats=beats
        )
        for spec in (fleet(8), fleet(128))
        for mode, beats in (("with_heartbeats", True), ("without_heartbeats", False))
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2))
    for name, r in results.items():
        print(
            f"{name:>34}: {r['simulated_gpu_hours_per_wall_s']:>12,.0f} simulated GPU-h per wall s "
            f"({r['speedup_x_real_time']:,.0f}x real time, {r['heartbeats_per_wall_s']:,} beats/s, "
            f"{r['faults_drawn']} faults drawn)"
        )
    print(f"written {OUT}")


if __name__ == "__main__":
    main()
