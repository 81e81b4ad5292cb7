"""The fleet goodput study: 30 simulated days of 1k, 16k and 100k-GPU training fleets under three
operators, swept over the published failure rates and over the checkpoint interval.

Writes ``evals/out/goodput.json``, ``evals/out/goodput.md`` and ``evals/out/goodput_ettr_vs_interval.png``.
Run: ``.venv/bin/python -m evals.goodput.study`` (or ``make eval``).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from evals.goodput.operators import OPERATORS, OperatorName
from evals.goodput.simulate import FleetCase, RunResult, simulate

OUT = Path(__file__).resolve().parents[1] / "out"
SIZES = (1_024, 16_384, 100_000)
RATES = (2.34, 4.0, 6.5)  # per 1000 node-days: Meta RSC-2, the default, Meta RSC-1 (failure-rates.md)
INTERVALS_S = (60, 120, 180, 300, 450, 600, 900, 1200, 1800, 2700, 3600, 5400, 7200)
SEEDS = tuple(range(8))


@dataclass(frozen=True)
class Summary:
    operator: OperatorName
    gpus: int
    failures_per_1000_node_days: float
    checkpoint_interval_s: float
    runs: int
    ettr_mean: float
    ettr_min: float
    ettr_max: float
    gpu_hours_lost: float
    gpu_hours_lost_to_failures: float
    incidents: float
    interruptions: float
    needed_person: float
    escalated: float
    failed_restarts: float


def summarise(results: list[RunResult]) -> Summary:
    first = results[0]
    mean = statistics.fmean
    return Summary(
        operator=first.operator,  # type: ignore[arg-type]
        gpus=first.gpus,
        failures_per_1000_node_days=first.failures_per_1000_node_days,
        checkpoint_interval_s=first.checkpoint_interval_s,
        runs=len(results),
        ettr_mean=mean(r.ettr for r in results),
        ettr_min=min(r.ettr for r in results),
        ettr_max=max(r.ettr for r in results),
        gpu_hours_lost=mean(r.gpu_hours_lost for r in results),
        gpu_hours_lost_to_failures=mean(r.gpu_hours_lost_to_failures for r in results),
        incidents=mean(r.incidents for r in results),
        interruptions=mean(r.interruptions for r in results),
        needed_person=mean(r.needed_person for r in results),
        escalated=mean(r.escalated for r in results),
        failed_restarts=mean(r.failed_restarts for r in results),
    )


def run_case(case: FleetCase, operator: OperatorName, seeds: Iterable[int] = SEEDS) -> Summary:
    return summarise([simulate(case, OPERATORS[operator], seed) for seed in seeds])


def study() -> dict[str, object]:
    started = time.perf_counter()
    grid = [
        asdict(run_case(FleetCase(gpus=gpus, failures_per_1000_node_days=rate), op))
        for gpus in SIZES
        for rate in RATES
        for op in OPERATORS
    ]
    sweep = {
        str(gpus): {
            op: [asdict(run_case(FleetCase(gpus=gpus, checkpoint_interval_s=dt), op)) for dt in INTERVALS_S]
            for op in OPERATORS
        }
        for gpus in SIZES
    }
    return {
        "grid": grid,
        "interval_sweep": sweep,
        "seeds": len(SEEDS),
        "wall_s": time.perf_counter() - started,
    }


def markdown(results: dict[str, object]) -> str:
    lines = [
        "# Fleet goodput study",
        "",
        f"30 simulated days, one synchronous job over the whole fleet, {results['seeds']} seeds per cell, "
        "checkpoint interval at Young's optimum for the fleet (10 s blocking write), restart overhead "
        "10 min, warm spares ~4 per 1,024 nodes. Failure rates per 1000 node-days from "
        "failure-rates.md (Meta RSC-2 2.34, default 4.0, Meta RSC-1 6.5).",
        "",
        "| GPUs | failures/1000 node-days | operator | ETTR (min-max) | GPU-hours lost | interruptions | needed a person | escalated (job not waiting) |",
        "|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    for row in results["grid"]:  # type: ignore[attr-defined]
        lines.append(
            f"| {row['gpus']:,} | {row['failures_per_1000_node_days']} | {row['operator']} | "
            f"{row['ettr_mean']:.3f} ({row['ettr_min']:.3f} to {row['ettr_max']:.3f}) | "
            f"{row['gpu_hours_lost']:,.0f} | {row['interruptions']:.0f} | {row['needed_person']:.0f} | "
            f"{row['escalated']:.0f} |"
        )
    lines += ["", f"Study wall time: {results['wall_s']:.1f} s.", ""]
    return "\n".join(lines)


def plot(results: dict[str, object], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = results["interval_sweep"]
    fig, axes = plt.subplots(1, len(SIZES), figsize=(5 * len(SIZES), 4), sharey=True)
    for ax, gpus in zip(axes, SIZES, strict=True):
        for op, rows in sweep[str(gpus)].items():  # type: ignore[index]
            ax.plot(
                [r["checkpoint_interval_s"] / 60 for r in rows],
                [r["ettr_mean"] for r in rows],
                marker="o",
                label=op,
            )
        young = FleetCase(gpus=gpus).interval_s / 60
        ax.axvline(young, color="grey", linestyle=":", label="Young's optimum")
        ax.set_xscale("log")
        ax.set_title(f"{gpus:,} GPUs, 4 failures / 1000 node-days")
        ax.set_xlabel("checkpoint interval (min)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("ETTR")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    results = study()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "goodput.json").write_text(json.dumps(results, indent=2))
    (OUT / "goodput.md").write_text(markdown(results))
    plot(results, OUT / "goodput_ettr_vs_interval.png")
    print(markdown(results))
    print(f"written {OUT / 'goodput.json'}, goodput.md, goodput_ettr_vs_interval.png")


if __name__ == "__main__":
    main()


__all__ = ["FleetCase", "replace", "run_case", "study"]
