"""Runs the scenario library and writes the report: ``evals/out/scenarios.{json,md,png}``, and the
per-family time-to-detect / time-to-mitigate distributions ``evals/out/response_times.json`` the
fleet goodput study reads (``evals.goodput.measured``).

Run: ``.venv/bin/python -m evals.scenarios.report [name-filter] [--planners rules,claude]``
(``make eval`` runs it with the rules planner). A planner that cannot run here (Claude without
``ANTHROPIC_API_KEY``) is reported as skipped, never silently replaced by the rules.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

from evals.scenarios.model import load_library
from evals.scenarios.runner import PlannerUnavailable, run_scenario
from evals.scenarios.score import ScenarioScore, score

OUT = Path(__file__).resolve().parents[1] / "out"


async def run_all(
    name_filter: str = "", planners: tuple[str, ...] = ("rules",), skipped: dict[str, str] | None = None
) -> list[ScenarioScore]:
    """Scores of every scenario (whose name contains ``name_filter``) under each planner; planners
    that cannot run go to ``skipped`` with the reason."""
    scores = []
    skipped = {} if skipped is None else skipped
    for scenario in load_library():
        if name_filter and name_filter not in scenario.name:
            continue
        for planner in planners:
            if planner in skipped:
                continue
            try:
                scores.append(score(await run_scenario(scenario, planner)))
            except PlannerUnavailable as exc:
                skipped[planner] = str(exc)
    return scores


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 1) if values else None


def summary(scores: list[ScenarioScore]) -> dict[str, object]:
    expected = sum(len(s.expectations) for s in scores)
    ttm = [e.time_to_mitigate_s for s in scores for e in s.expectations if e.time_to_mitigate_s is not None]
    ttd = [e.time_to_detect_s for s in scores for e in s.expectations if e.time_to_detect_s is not None]
    families: dict[str, list[int]] = {}
    for s in scores:
        counts = families.setdefault(s.family, [0, 0])
        counts[0] += s.passed
        counts[1] += 1
    return {
        "scenarios": len(scores),
        "passed": sum(s.passed for s in scores),
        "expected_incidents": expected,
        "detected": sum(s.detected for s in scores),
        "diagnosed": sum(s.diagnosed for s in scores),
        "acted_correctly": sum(s.acted_correctly for s in scores),
        "unsafe_actions": sum(len(s.unsafe) for s in scores),
        "mean_time_to_detect_s": _mean(ttd),
        "mean_time_to_mitigate_s": _mean(ttm),
        "max_time_to_mitigate_s": max(ttm) if ttm else None,
        "mitigated_incidents_timed": len(ttm),
        "gpu_hours_lost": round(sum(s.gpu_hours_lost for s in scores), 3),
        "oracle_gpu_hours": round(sum(s.oracle_gpu_hours for s in scores), 3),
        "by_family": {f: f"{p}/{n}" for f, (p, n) in sorted(families.items())},
        "per_family": per_family(scores),
    }


def _quantiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "median": None, "p90": None, "max": None}
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "median": statistics.median(ordered),
        "p90": ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))],
        "max": ordered[-1],
    }


def response_times(scores: list[ScenarioScore]) -> dict[str, object]:
    """Per scenario family, every matched expected incident's time to detect and to mitigate
    (simulated seconds from the fault), with what it was about and how it ended."""
    families: dict[str, list[dict[str, object]]] = {}
    for s in scores:
        for e in s.expectations:
            if e.time_to_detect_s is None:
                continue
            families.setdefault(s.family, []).append(
                {
                    "scenario": s.name,
                    "planner": s.planner,
                    "root_cause": e.expected if ":" in e.expected else None,
                    "status": e.status,
                    "runbooks": e.runbooks,
                    "passed": s.passed,
                    "detect_s": e.time_to_detect_s,
                    "mitigate_s": e.time_to_mitigate_s,
                }
            )
    return {
        "unit": "simulated seconds from the fault (tick resolution); processing takes no simulated time",
        "families": {
            family: {
                "samples": samples,
                "detect_s": _quantiles([float(x["detect_s"]) for x in samples]),  # type: ignore[arg-type]
                "mitigate_s": _quantiles(
                    [float(x["mitigate_s"]) for x in samples if x["mitigate_s"] is not None]  # type: ignore[arg-type]
                ),
            }
            for family, samples in sorted(families.items())
        },
    }


def per_family(scores: list[ScenarioScore]) -> dict[str, dict[str, object]]:
    """Per family: scenarios passed, expectations acted on correctly, unsafe actions, GPU-hours
    lost against the oracle's."""
    out: dict[str, dict[str, object]] = {}
    for family in sorted({s.family for s in scores}):
        mine = [s for s in scores if s.family == family]
        out[family] = {
            "passed": f"{sum(s.passed for s in mine)}/{len(mine)}",
            "acted_correctly": f"{sum(s.acted_correctly for s in mine)}/{sum(len(s.expectations) for s in mine)}",
            "unsafe_actions": sum(len(s.unsafe) for s in mine),
            "gpu_hours_lost": round(sum(s.gpu_hours_lost for s in mine), 2),
            "oracle_gpu_hours": round(sum(s.oracle_gpu_hours for s in mine), 2),
        }
    return out


def _pct(part: object, whole: object) -> str:
    return f"{part}/{whole}" + (f" ({100 * int(part) / int(whole):.0f}%)" if whole else "")  # type: ignore[call-overload]


def markdown(
    scores: list[ScenarioScore],
    totals: dict[str, object],
    wall_s: float,
    skipped: dict[str, str] | None = None,
) -> str:
    exp = totals["expected_incidents"]
    lines = [
        "# Scenario evaluation",
        "",
        f"- scenarios passed: {_pct(totals['passed'], totals['scenarios'])}; by family: "
        + ", ".join(f"{f} {c}" for f, c in totals["by_family"].items())  # type: ignore[attr-defined]
        + ".",
        f"- expected incidents detected {_pct(totals['detected'], exp)}, diagnosed (root-cause entity) "
        f"{_pct(totals['diagnosed'], exp)}, acted on correctly {_pct(totals['acted_correctly'], exp)}.",
        f"- unsafe actions: {totals['unsafe_actions']}.",
        f"- mean time to detect {totals['mean_time_to_detect_s']} s, mean time to mitigate "
        f"{totals['mean_time_to_mitigate_s']} s (max {totals['max_time_to_mitigate_s']} s, over "
        f"{totals['mitigated_incidents_timed']} mitigated incidents), simulated seconds from the fault.",
        f"- GPU-hours lost {totals['gpu_hours_lost']} vs oracle {totals['oracle_gpu_hours']}.",
        f"- wall time {wall_s:.1f} s.",
    ]
    for planner, why in (skipped or {}).items():
        lines.append(f"- planner {planner}: skipped ({why}).")
    lines += [
        "",
        "| family | passed | acted on correctly | unsafe | GPU-h lost | oracle GPU-h |",
        "|---|---|---|---:|---:|---:|",
    ]
    for family, f in totals.get("per_family", {}).items():  # type: ignore[attr-defined]
        lines.append(
            f"| {family} | {f['passed']} | {f['acted_correctly']} | {f['unsafe_actions']} | "
            f"{f['gpu_hours_lost']} | {f['oracle_gpu_hours']} |"
        )
    lines += [
        "",
        "The runner advances the twin's clock in ticks and lets the pipeline settle in between, so "
        "detection windows (heartbeat intervals, hang thresholds, sustained slowdowns, DCGM scrapes) "
        "count and processing does not (the wall-clock event-to-action latency is "
        "`evals/benchmarks/first_action.py`). Times run from the fault (the injection) to the incident's "
        "first event (detect) and to `mitigated`. GPU-hours lost are measured on the twin over the "
        "timeline (stalls, restarts, discarded work, slow steps); the oracle acts perfectly at the moment "
        "of each fault. Incidents count those an operator sees (not folded into a shared-part incident).",
        "",
        "| scenario | family | planner | pass | incidents (+folded) | mutations | unsafe | detect (sim s) | "
        "worst time to mitigate (sim s) | GPU-h lost | oracle GPU-h | outcome | problems |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for s in scores:
        ttm = s.worst_time_to_mitigate_s
        ttd = [e.time_to_detect_s for e in s.expectations if e.time_to_detect_s is not None]
        outcome = "; ".join(f"{e.status} {'+'.join(e.runbooks) or '-'}" for e in s.expectations if e.matched)
        folded = f" (+{s.folded})" if s.folded else ""
        lines.append(
            f"| {s.name} | {s.family} | {s.planner} | {'yes' if s.passed else '**no**'} | {s.incidents}{folded} | "
            f"{s.mutations} | {len(s.unsafe)} | {'' if not ttd else f'{max(ttd):.0f}'} | "
            f"{'' if ttm is None else f'{ttm:.0f}'} | {s.gpu_hours_lost:.2f} | {s.oracle_gpu_hours:.2f} | "
            f"{outcome} | {'; '.join(s.problems)[:300]} |"
        )
    return "\n".join(lines) + "\n"


def plot(scores: list[ScenarioScore], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [s for s in scores if s.oracle_gpu_hours > 0 or s.gpu_hours_lost > 0]
    fig, ax = plt.subplots(figsize=(max(6, len(shown) * 0.6), 4.5))
    xs = range(len(shown))
    ax.bar([x - 0.2 for x in xs], [s.gpu_hours_lost for s in shown], width=0.4, label="gpu-aiops")
    ax.bar([x + 0.2 for x in xs], [s.oracle_gpu_hours for s in shown], width=0.4, label="oracle")
    labels = [f"{s.name} ({s.planner})" if len({x.planner for x in scores}) > 1 else s.name for s in shown]
    ax.set_xticks(list(xs), labels, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("GPU-hours lost")
    ax.set_title("GPU-hours lost per scenario: gpu-aiops vs a perfect instant remediator")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("name_filter", nargs="?", default="", help="run the scenarios whose name contains it")
    parser.add_argument("--planners", default="rules", help="comma-separated: rules, claude, hybrid, explain")
    parser.add_argument("--out", type=Path, default=OUT, help="folder for scenarios.{json,md,png}")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, force=True)
    planners = tuple(p.strip() for p in args.planners.split(",") if p.strip())
    started = time.perf_counter()
    skipped: dict[str, str] = {}
    scores = asyncio.run(run_all(args.name_filter, planners, skipped))
    wall = time.perf_counter() - started
    totals = summary(scores)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "scenarios.json").write_text(
        json.dumps(
            {
                "command": " ".join(["python -m evals.scenarios.report", *argv]),
                "summary": totals,
                "wall_s": round(wall, 1),
                "planners": list(planners),
                "skipped_planners": skipped,
                "scores": [asdict(s) for s in scores],
            },
            indent=2,
            default=str,
        )
    )
    (out / "scenarios.md").write_text(markdown(scores, totals, wall, skipped))
    times = {"command": " ".join(["python -m evals.scenarios.report", *argv]), **response_times(scores)}
    (out / "response_times.json").write_text(json.dumps(times, indent=2))
    print(markdown(scores, totals, wall, skipped))
    try:
        plot(scores, out / "scenarios.png")
    except ModuleNotFoundError as exc:
        raise SystemExit(
            f"scenarios.json and scenarios.md written to {out}; no plot: {exc} "
            "(`make eval` installs the eval extras)"
        ) from exc


if __name__ == "__main__":
    main()
