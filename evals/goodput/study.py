"""The fleet goodput study: 30 simulated days of 1k, 16k and 100k-GPU training fleets under four
operators (manual on call, naive restart, gpu-aiops, and the instant operator — the bound), with
gpu-aiops' detection and mitigation times measured by the scenario suite, and the platform's levers
(checkpoint advice, spare sizing, pre-emptive removal, repair turnaround) measured one at a time on
the same failures (same seeds).

Writes ``evals/out/goodput.json``, ``evals/out/goodput.md`` and ``evals/out/goodput_ettr_vs_interval.png``.
Run: ``.venv/bin/python -m evals.goodput.study`` after ``python -m evals.scenarios.report`` (``make
eval`` runs both); ``--assumed`` runs it on the labelled assumptions alone.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from evals.goodput import levers as lv
from evals.goodput.measured import MeasuredTimes, load, timings_from
from evals.goodput.operators import (
    OPERATORS,
    SDC_NUMERICS_RECALL,
    GpuAiops,
    Instant,
    InstantFor,
    Operator,
    OperatorName,
    Signal,
)
from evals.goodput.simulate import FleetCase, Levers, RunResult, simulate
from skills.goodput_math import checkpoint_advice

OUT = Path(__file__).resolve().parents[1] / "out"
SIZES = (1_024, 16_384, 100_000)
RATES = (2.34, 4.0, 6.5)  # per 1000 node-days: Meta RSC-2, the default, Meta RSC-1 (failure-rates.md)
INTERVALS_S = (60, 120, 180, 300, 450, 600, 900, 1200, 1800, 2700, 3600, 5400, 7200)
CURRENT_INTERVALS_S = (600, 1800, 3600)  # checkpoint-advice table: a job's configured interval
SEEDS = tuple(range(10))
# Student t, two-sided 95%, by degrees of freedom (normal beyond the table).
_T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23,
        11: 2.20, 12: 2.18, 13: 2.16, 14: 2.14, 15: 2.13, 16: 2.12, 17: 2.11, 18: 2.10, 19: 2.09}  # fmt: skip


def ci95(values: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% confidence interval (Student t over the seeds)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan
    t = _T95.get(len(values) - 1, 1.96)
    return mean, t * statistics.stdev(values) / math.sqrt(len(values))


@dataclass(frozen=True)
class Summary:
    operator: str
    lever: str
    gpus: int
    failures_per_1000_node_days: float
    checkpoint_interval_s: float
    runs: int
    ettr_mean: float
    ettr_ci95: float
    gpu_hours_lost: float
    incidents: float
    interruptions: float
    needed_person: float
    escalated: float
    failed_restarts: float
    spares: float
    spare_shortfalls: float
    spare_wait_h: float
    drains_avoided: float
    false_drains: float
    ettr_by_seed: list[float]


def summarise(results: list[RunResult], lever: str) -> Summary:
    first, mean = results[0], statistics.fmean
    ettr, half = ci95([r.ettr for r in results])
    return Summary(
        operator=first.operator,
        lever=lever,
        gpus=first.gpus,
        failures_per_1000_node_days=first.failures_per_1000_node_days,
        checkpoint_interval_s=first.checkpoint_interval_s,
        runs=len(results),
        ettr_mean=ettr,
        ettr_ci95=half,
        gpu_hours_lost=mean(r.gpu_hours_lost for r in results),
        incidents=mean(r.incidents for r in results),
        interruptions=mean(r.interruptions for r in results),
        needed_person=mean(r.needed_person for r in results),
        escalated=mean(r.escalated for r in results),
        failed_restarts=mean(r.failed_restarts for r in results),
        spares=mean(r.spares for r in results),
        spare_shortfalls=mean(r.spare_shortfalls for r in results),
        spare_wait_h=mean(r.spare_wait_s for r in results) / 3600,
        drains_avoided=mean(r.drains_avoided for r in results),
        false_drains=mean(r.false_drains for r in results),
        ettr_by_seed=[r.ettr for r in results],
    )


def run(
    case: FleetCase,
    operator: Operator,
    levers: Levers = Levers(),
    seeds: Iterable[int] = SEEDS,
    lever: str = "",
) -> Summary:
    return summarise([simulate(case, operator, seed, levers=levers) for seed in seeds], lever)


def run_case(case: FleetCase, operator: OperatorName, seeds: Iterable[int] = SEEDS) -> Summary:
    """One cell with the default (assumed) operator settings: kept for tests and quick looks."""
    return run(case, OPERATORS[operator], seeds=seeds)


def paired(a: Summary, b: Summary, how: str) -> dict[str, float]:
    """Per seed ``a`` ÷ ``b`` (how='ratio') or ``a`` - ``b`` ('delta'): mean and 95% CI half-width."""
    pairs = zip(a.ettr_by_seed, b.ettr_by_seed, strict=True)
    values = [x / y if how == "ratio" else x - y for x, y in pairs]
    mean, half = ci95(values)
    return {"mean": mean, "ci95": half}


def operators_for(times: MeasuredTimes) -> dict[str, Operator]:
    return {
        "manual": OPERATORS["manual"],
        "naive": OPERATORS["naive"],
        "gpu_aiops": GpuAiops(timings=times.timings),
        "instant": Instant(),
    }


def with_levers(operator: Operator, levers: Levers) -> Operator:
    """gpu-aiops as the levers make it: the numerics detector sees a share of silent corruption."""
    if levers.numerics and isinstance(operator, GpuAiops):
        return replace(operator, numerics_recall=SDC_NUMERICS_RECALL)
    return operator


def study(times: MeasuredTimes, seeds: tuple[int, ...] = SEEDS) -> dict[str, object]:
    started = time.perf_counter()
    ops = operators_for(times)
    aiops, instant = ops["gpu_aiops"], ops["instant"]
    repair_s = times.repair.seconds if times.repair is not None else None
    goal, lever_rows, grid, advice, gaps, sweep = [], [], [], [], [], {}
    for gpus in SIZES:
        case = FleetCase(gpus=gpus)
        base_case, _ = lv.setting(case, "baseline")
        cells = {name: run(base_case, op, seeds=seeds, lever="baseline") for name, op in ops.items()}
        daly_case, _ = lv.setting(case, "checkpoint")
        bound_daly = run(daly_case, instant, seeds=seeds, lever="checkpoint")
        by_lever = {"baseline": cells["gpu_aiops"]}
        for lever in lv.LEVERS:
            lever_case, levers = lv.setting(case, lever, repair_s)
            by_lever[lever] = run(lever_case, with_levers(aiops, levers), levers, seeds, lever)
        all_case, all_levers = lv.setting(case, "all", repair_s)
        # The bound with the same pre-emptive removal: instant response, the same crashes avoided.
        bound_levers = run(all_case, instant, replace(all_levers, spares=None), seeds, "all")
        # The bound no operator can beat: every fault with a signal met instantly; silent data
        # corruption met instantly where the numerics show it (with the lever), else found as a person
        # would; the same levers.
        signalled = frozenset(x for x in GAP_SIGNALS if x != "silent")
        seen_all, seen_base = instant, instant
        if isinstance(aiops, GpuAiops):
            numerics_on = with_levers(aiops, all_levers)
            assert isinstance(numerics_on, GpuAiops)
            seen_all = InstantFor(numerics_on, signalled, silent_when_seen=True)
            seen_base = InstantFor(aiops, signalled)
        bound_seen = run(all_case, seen_all, replace(all_levers, spares=None), seeds, "all")
        bound_seen_base = run(base_case, seen_base, seeds=seeds, lever="baseline")
        goal.append(
            {
                "gpus": gpus,
                "rows": {k: asdict(v) for k, v in cells.items()}
                | {
                    "gpu_aiops_all_levers": asdict(by_lever["all"]),
                    "instant_daly": asdict(bound_daly),
                    "instant_same_levers": asdict(bound_levers),
                    "instant_observable_same_levers": asdict(bound_seen),
                },
                "ratio_baseline": paired(cells["gpu_aiops"], cells["instant"], "ratio"),
                "ratio_all_levers": paired(by_lever["all"], bound_daly, "ratio"),
                "ratio_same_levers": paired(by_lever["all"], bound_levers, "ratio"),
                "ratio_observable_baseline": paired(cells["gpu_aiops"], bound_seen_base, "ratio"),
                "ratio_observable_same_levers": paired(by_lever["all"], bound_seen, "ratio"),
            }
        )
        for lever, summary in by_lever.items():
            bound = bound_daly if lever in ("checkpoint", "all", "all_but_precursors") else cells["instant"]
            row = asdict(summary) | {
                "delta_vs_baseline": paired(summary, by_lever["baseline"], "delta"),
                "ratio_to_instant": paired(summary, bound, "ratio"),
            }
            lever_rows.append(row)
        gaps.append(
            {
                "gpus": gpus,
                **gap_attribution(base_case, aiops, cells["gpu_aiops"], cells["instant"], seeds),
                "all_levers": gap_attribution(
                    all_case,
                    with_levers(aiops, all_levers),
                    by_lever["all"],
                    bound_levers,
                    seeds,
                    all_levers,
                ),
            }
        )
        for rate in RATES:
            rated, _ = lv.setting(FleetCase(gpus=gpus, failures_per_1000_node_days=rate), "baseline")
            row_cells = {name: run(rated, op, seeds=seeds, lever="baseline") for name, op in ops.items()}
            grid.append(
                {
                    "gpus": gpus,
                    "rate": rate,
                    "rows": {k: asdict(v) for k, v in row_cells.items()},
                    "ratio": paired(row_cells["gpu_aiops"], row_cells["instant"], "ratio"),
                }
            )
        for current in CURRENT_INTERVALS_S:
            now = run(replace(case, checkpoint_interval_s=current), aiops, seeds=seeds)
            best = by_lever["checkpoint"]
            advice.append(
                {
                    "gpus": gpus,
                    "current_interval_s": current,
                    "advised_interval_s": best.checkpoint_interval_s,
                    "ettr_current": now.ettr_mean,
                    "ettr_advised": best.ettr_mean,
                    "simulated_gain": paired(best, now, "delta"),
                    "predicted_gain": _predicted_gain(case, current),
                }
            )
        sweep[str(gpus)] = {
            name: [
                asdict(run(replace(case, checkpoint_interval_s=dt), op, seeds=seeds[:4]))
                for dt in INTERVALS_S
            ]
            for name, op in ops.items()
            if name != "naive"
        }
    return {
        "seeds": list(seeds),
        "times": {
            "path": _shown(times.path),
            "planner": times.planner,
            "families": {
                s: {
                    "source": t.source,
                    "measured": t.measured,
                    "n": len(t.samples),
                    "detect_median_s": statistics.median(d for d, _ in t.samples),
                    "mitigate_median_s": statistics.median(m for _, m in t.samples),
                }
                for s, t in times.timings.items()
            },
        },
        "repair": {
            "seconds": repair_s if repair_s is not None else Levers().fast_repair_s,
            "basis": times.repair.basis
            if times.repair is not None
            else "assumed: the twin's reboot + 30 min",
        },
        "levers": {
            lever: {
                "spares": {str(g): lv.setting(FleetCase(gpus=g), lever, repair_s)[1].spares for g in SIZES}
            }
            for lever in ("baseline", *lv.LEVERS)
        },
        "goal": goal,
        "lever_rows": lever_rows,
        "grid": grid,
        "checkpoint_advice": advice,
        "gap": gaps,
        "interval_sweep": sweep,
        "wall_s": time.perf_counter() - started,
    }


def _shown(path: str) -> str:
    """A path inside the repository, relative to it."""
    root = Path(__file__).resolve().parents[2]
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return path


GAP_SIGNALS: tuple[Signal, ...] = ("xid", "ecc", "software", "hang", "network", "host", "silent")


def gap_attribution(
    case: FleetCase,
    aiops: Operator,
    base: Summary,
    bound: Summary,
    seeds: tuple[int, ...],
    levers: Levers = Levers(),
) -> dict[str, object]:
    """How much of the gap between gpu-aiops (``base``: ``aiops`` with ``levers``) and its bound
    each fault family accounts for (that family met instantly, the rest as measured), and the share
    spent waiting for spares (an unlimited pool); paired ETTR gains over ``base`` on the same seeds."""
    assert isinstance(aiops, GpuAiops)
    by_family = {
        s: paired(run(case, InstantFor(aiops, frozenset({s})), levers, seeds), base, "delta")
        for s in GAP_SIGNALS
    }
    spares = paired(run(case, aiops, replace(levers, spares=10**6), seeds), base, "delta")
    return {"total": paired(bound, base, "delta"), "by_family": by_family, "spare_waits": spares}


def _predicted_gain(case: FleetCase, current: float) -> float:
    """What ``checkpoint_advice`` (the MCP tool's math) predicts, downtime = the restart overhead."""
    advice = checkpoint_advice(
        gpus=case.gpus,
        gpus_per_node=case.gpus_per_node,
        failures_per_node_day=case.failures_per_1000_node_days / 1000,
        checkpoint_write_s=case.checkpoint_write_s,
        current_interval_s=current,
        downtime_per_failure_s=case.restart_overhead_s,
    )
    return advice.ettr_gain


def main(argv: list[str] | None = None) -> None:
    from evals.goodput.report import markdown, plot

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--times", type=Path, default=OUT / "response_times.json", help="measured times")
    parser.add_argument("--assumed", action="store_true", help="use the labelled assumptions, no measurement")
    parser.add_argument("--seeds", type=int, default=len(SEEDS), help="seeds per cell")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        times = timings_from({}, "(assumptions)") if args.assumed else load(args.times)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise SystemExit(f"goodput study: {exc}") from exc
    results = study(times, tuple(range(args.seeds)))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "goodput.json").write_text(json.dumps(results, indent=2))
    (OUT / "goodput.md").write_text(markdown(results))
    print(markdown(results))
    try:
        plot(results, OUT / "goodput_ettr_vs_interval.png")
    except ModuleNotFoundError as exc:
        raise SystemExit(
            f"goodput.json and goodput.md written to {OUT}; no plot: {exc} (`make eval` installs the eval extras)"
        ) from exc
    print(f"written {OUT / 'goodput.json'}, goodput.md, goodput_ettr_vs_interval.png")


if __name__ == "__main__":
    main()
