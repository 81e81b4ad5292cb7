"""Runs the scenario library and writes the report: ``evals/out/scenarios.{json,md,png}``.

Run: ``.venv/bin/python -m evals.scenarios.report [name-filter]`` (``make eval`` runs it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path

from evals.scenarios.model import load_library
from evals.scenarios.runner import run_scenario
from evals.scenarios.score import ScenarioScore, score

OUT = Path(__file__).resolve().parents[1] / "out"


async def run_all(name_filter: str = "", planners: tuple[str, ...] = ("rules",)) -> list[ScenarioScore]:
    scores = []
    for scenario in load_library():
        if name_filter and name_filter not in scenario.name:
            continue
        for planner in planners:
            scores.append(score(await run_scenario(scenario, planner)))
    return scores


def summary(scores: list[ScenarioScore]) -> dict[str, object]:
    expected = sum(len(s.expectations) for s in scores)
    return {
        "scenarios": len(scores),
        "passed": sum(s.passed for s in scores),
        "expected_incidents": expected,
        "detected": sum(s.detected for s in scores),
        "diagnosed": sum(s.diagnosed for s in scores),
        "acted_correctly": sum(s.acted_correctly for s in scores),
        "unsafe_actions": sum(len(s.unsafe) for s in scores),
        "gpu_hours_lost": round(sum(s.gpu_hours_lost for s in scores), 3),
        "oracle_gpu_hours": round(sum(s.oracle_gpu_hours for s in scores), 3),
    }


def markdown(scores: list[ScenarioScore], totals: dict[str, object], wall_s: float) -> str:
    lines = [
        "# Scenario evaluation",
        "",
        f"{totals['passed']}/{totals['scenarios']} scenarios passed; detection {totals['detected']}/"
        f"{totals['expected_incidents']}, diagnosis {totals['diagnosed']}/{totals['expected_incidents']}, "
        f"action {totals['acted_correctly']}/{totals['expected_incidents']}, unsafe actions "
        f"{totals['unsafe_actions']}; GPU-hours lost {totals['gpu_hours_lost']} (oracle "
        f"{totals['oracle_gpu_hours']}). Wall time {wall_s:.1f} s.",
        "",
        "Times to mitigate are simulated seconds from the incident's first event: the runner advances the "
        "twin's clock in ticks and lets the pipeline settle in between, so detection windows count and "
        "processing does not (the wall-clock event-to-action latency is `evals/benchmarks/first_action.py`).",
        "",
        "| scenario | family | planner | pass | incidents | mutations | unsafe | worst time to mitigate (sim s) | GPU-h lost | oracle GPU-h | problems |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in scores:
        ttm = s.worst_time_to_mitigate_s
        lines.append(
            f"| {s.name} | {s.family} | {s.planner} | {'yes' if s.passed else '**no**'} | {s.incidents} | "
            f"{s.mutations} | {len(s.unsafe)} | {'' if ttm is None else f'{ttm:.0f}'} | {s.gpu_hours_lost:.2f} | "
            f"{s.oracle_gpu_hours:.2f} | {'; '.join(s.problems)[:300]} |"
        )
    return "\n".join(lines) + "\n"


def plot(scores: list[ScenarioScore], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [s for s in scores if s.oracle_gpu_hours > 0 or s.gpu_hours_lost > 0]
    fig, ax = plt.subplots(figsize=(max(6, len(shown) * 0.6), 4))
    xs = range(len(shown))
    ax.bar([x - 0.2 for x in xs], [s.gpu_hours_lost for s in shown], width=0.4, label="gpu-aiops")
    ax.bar([x + 0.2 for x in xs], [s.oracle_gpu_hours for s in shown], width=0.4, label="oracle")
    ax.set_xticks(list(xs), [s.name for s in shown], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("GPU-hours lost")
    ax.set_title("GPU-hours lost per scenario: gpu-aiops (rules planner) vs a perfect instant remediator")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, force=True)
    name_filter = sys.argv[1] if len(sys.argv) > 1 else ""
    started = time.perf_counter()
    scores = asyncio.run(run_all(name_filter))
    wall = time.perf_counter() - started
    totals = summary(scores)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "scenarios.json").write_text(
        json.dumps(
            {"summary": totals, "wall_s": wall, "scores": [asdict(s) for s in scores]}, indent=2, default=str
        )
    )
    (OUT / "scenarios.md").write_text(markdown(scores, totals, wall))
    plot(scores, OUT / "scenarios.png")
    print(markdown(scores, totals, wall))


if __name__ == "__main__":
    main()
