"""Benchmark: parsing one dcgm-exporter scrape of 2,048 GPUs, the hand-written parser against
``prometheus_client``'s.

The DCGM detector reads every scrape (``events/detectors/exposition.py:parse_exposition``). The
same text — the fleet twin's exporter for 256 nodes of 8 GPUs, 19 metrics a GPU — is parsed by:

- ``parse_exposition(text, names)``: the detector's call (only the metrics it reads);
- ``parse_exposition(text)``: every metric;
- ``prometheus_client.parser.text_string_to_metric_families``, consumed to the last sample, then
  filtered to the same names (what the detector would do with it). It renames a counter's samples
  ``<name>_total`` and raises on the first malformed line, where the hand-written parser counts
  and skips it.

Median and best wall time over the repeats, samples parsed, and the ratio. Writes
``evals/out/exposition_parser.json``. Run: ``.venv/bin/python -m evals.benchmarks.exposition_parser``
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from events.detectors.dcgm import METRIC_NAMES
from events.detectors.exposition import parse_exposition
from fleet import FleetSpec, FleetTwin
from fleet.exporter import render_metrics

OUT = Path(__file__).resolve().parents[1] / "out" / "exposition_parser.json"
NODES, GPUS_PER_NODE, REPEATS = 256, 8, 15


def exposition() -> str:
    twin = FleetTwin(FleetSpec(leaf_switches=NODES // 8, nodes_per_leaf=8, spare_nodes=8, jobs=[]))
    return render_metrics(twin)


def hand_written(names: frozenset[str] | None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        samples, _ = parse_exposition(text, names)
        return len(samples)

    return parse


def prometheus_client_parser(names: frozenset[str]) -> Callable[[str], int]:
    def parse(text: str) -> int:
        kept = 0
        for family in text_string_to_metric_families(text):
            # It names a counter's samples <family>_total (DCGM's counters end in upper-case _TOTAL).
            for sample in family.samples:
                if sample.name in names or sample.name.removesuffix("_total") in names:
                    kept += 1
        return kept

    return parse


def timed(parse: Callable[[str], int], text: str) -> dict[str, Any]:
    times, count = [], 0
    for _ in range(REPEATS):
        start = time.perf_counter()
        count = parse(text)
        times.append(time.perf_counter() - start)
    return {"samples": count, "median_ms": statistics.median(times) * 1e3, "best_ms": min(times) * 1e3}


def main() -> None:
    text = exposition()
    gpus = text.count("DCGM_FI_DEV_GPU_TEMP{")
    results = {
        "hand_written_detector_names": timed(hand_written(METRIC_NAMES), text),
        "hand_written_all_metrics": timed(hand_written(None), text),
        "prometheus_client_filtered": timed(prometheus_client_parser(METRIC_NAMES), text),
    }
    ratio = (
        results["prometheus_client_filtered"]["median_ms"]
        / results["hand_written_detector_names"]["median_ms"]
    )
    report = {
        "gpus": gpus,
        "bytes": len(text),
        "lines": text.count("\n"),
        "repeats": REPEATS,
        "results": results,
        "prometheus_client_over_hand_written": round(ratio, 2),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{gpus} GPUs, {len(text) / 1e6:.1f} MB, {report['lines']} lines; median of {REPEATS}")
    for name, r in results.items():
        print(f"  {name:32} {r['median_ms']:8.1f} ms (best {r['best_ms']:.1f})  {r['samples']} samples")
    print(f"  prometheus_client / hand-written (the detector's call): {ratio:.2f}x")


if __name__ == "__main__":
    main()
