"""Benchmark: the DCGM recording rules at fleet scale once their windows are full.

``dcgm_fleet`` measures a round a minute or two after Prometheus starts, when the range terms of the
rules (``increase(...[10m])``, ``rate(...[1h])``) see only that much history. Here Prometheus
scrapes the generated fleet for ``--minutes`` first (the 10-minute window full; the hour one is
not, on this budget), recording each rule group's evaluation time every minute; then 0.1% of the
GPUs gain double-bit errors, and the time until ``gpu:dcgm_attention`` marks all of them is taken,
with two recorded rounds (every fault marked in each; the detector's events: the faults once).

Writes ``evals/out/dcgm_rules_soak.json``.
Run: ``.venv/bin/python -m evals.benchmarks.dcgm_rules_soak [gpus] [--minutes=N]`` (defaults
100000 and 11; needs ``prometheus`` on PATH).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from evals.benchmarks.dcgm_fleet import (
    FAULTY_SHARE,
    GPUS_PER_NODE,
    OUT,
    Exporter,
    exposition,
    prometheus,
    rule_groups,
    scalar,
    wait,
)
from events.detectors.dcgm import DcgmDetector, group_samples
from events.detectors.prometheus_changes import RECORDED, PrometheusChangesSource


def soak(gpus: int, minutes: int) -> dict[str, object]:
    interval = 5 if gpus <= 20_000 else 20
    faulty = set(range(0, gpus, int(1 / FAULTY_SHARE)))
    expected = {(f"node-{g // GPUS_PER_NODE:05d}", str(g % GPUS_PER_NODE)) for g in faulty}
    exporter = Exporter()
    exporter.body = exposition(gpus, set())
    changed_body = exposition(gpus, faulty)
    result: dict[str, object] = {"gpus": gpus, "faulty_gpus": len(faulty), "scrape_interval_s": interval}
    with tempfile.TemporaryDirectory() as tmp, prometheus(Path(tmp), exporter.target, interval) as url:
        wait(lambda: scalar(url, "count(DCGM_FI_DEV_ECC_DBE_VOL_TOTAL)") == gpus, 900, "the baseline scrape")
        source = PrometheusChangesSource(url, recorded=True, timeout_s=900)
        detector = DcgmDetector("bench")
        baseline, _ = source.ask_full()
        detector.observe_readings(group_samples(baseline), datetime.now(UTC))
        started = time.monotonic()
        samples: list[dict[str, object]] = []
        while time.monotonic() - started < minutes * 60:
            time.sleep(60)
            taken = {"minute": round((time.monotonic() - started) / 60, 1), "groups": rule_groups(url)}
            samples.append(taken)
            print(json.dumps(taken), flush=True)
        result["before_faults"] = samples
        exporter.body = changed_body
        wait(
            lambda: scalar(url, "sum(DCGM_FI_DEV_ECC_DBE_VOL_TOTAL)") == len(faulty),
            900,
            "the faults scraped",
        )
        scraped_at = time.perf_counter()
        wait(lambda: scalar(url, f"count({RECORDED})") >= len(faulty), 900, "the rule to see the faults")
        result["marked_after_scrape_s"] = round(time.perf_counter() - scraped_at, 1)
        rounds = []
        for _ in range(2):
            got, done = source.ask_recorded()
            marked = {(s.labels.get("Hostname"), s.labels.get("gpu")) for s in got}
            events = detector.observe_readings(group_samples(got), datetime.now(UTC))
            rounds.append(
                {**done.__dict__, "faults_marked": len(marked & expected), "events_found": len(events)}
            )
        result["rounds"] = rounds
        result["after_faults"] = rule_groups(url)
    exporter.server.shutdown()
    return result


def main() -> None:
    args = sys.argv[1:]
    minutes = next((int(a.split("=", 1)[1]) for a in args if a.startswith("--minutes=")), 11)
    gpus = next((int(a) for a in args if not a.startswith("--")), 100_000)
    result = soak(gpus, minutes)
    out = OUT.with_name("dcgm_rules_soak.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result), flush=True)
    print(f"written {out}")


if __name__ == "__main__":
    main()
