"""Benchmark: one DCGM detector round at 1k, 16k and 100k GPUs against a real Prometheus.

A generated dcgm-exporter exposition (8 GPUs a node, the 12 fields the detector reads) is served
over HTTP and scraped by Debian's ``prometheus``; after the baseline scrapes, 0.1% of the GPUs
gain double-bit errors. Per fleet size, the ways to run a round:

- ``full``: every GPU's DCGM fields, the changes source's baseline (one question per field);
  ``full_one_query``: the same in one query (``PrometheusSource``), up to 16k GPUs only;
- ``changes``: only the GPUs that changed or are past a threshold, the whole question evaluated at
  query time (``PrometheusChangesSource``, window 1m);
- ``recorded``: the same GPUs from the recording rule ``gpu:dcgm_attention``
  (deploy/prometheus/recording-rules.yml, loaded into this Prometheus), which Prometheus evaluates
  at its rule intervals: the detector's round is then an index lookup. Recorded: how long after the
  faults were scraped the rule marked them all, whether two rounds each held every fault (the
  states hold until a reset) and how many events each gave the detector (the faults once), and
  each rule group's own evaluation time.

For each: wall time of the query, bytes transferred, Prometheus's own evaluation time, series
returned, and the detector's time on the answer. A size this machine cannot do against Prometheus
(a query Prometheus refuses, a scrape it cannot finish) records Prometheus's reason and goes on.

Then the round without Prometheus (``AIOPS_DCGM_EXPORTERS``): one exporter per node, read in full
every round by ``ExporterSource`` (32 at a time): wall time and bytes.

Writes ``evals/out/dcgm_fleet.json`` (``--exporters-only``: ``dcgm_fleet_exporters.json``).
Run: ``.venv/bin/python -m evals.benchmarks.dcgm_fleet [sizes...] [--exporters-only]`` (needs
``prometheus`` on PATH).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from aiops.loopback_prometheus import LoopbackExporter, prometheus, prometheus_binary
from aiops.nats_cluster import free_ports
from events.detectors.dcgm import FIELDS, METRIC_NAMES, XID_COUNT, DcgmDetector, group_samples
from events.detectors.exposition import DCGM_PROMQL, ExporterSource
from events.detectors.prometheus_changes import RECORDED, PrometheusChangesSource

OUT = Path(__file__).resolve().parents[1] / "out" / "dcgm_fleet.json"
RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "recording-rules.yml"
GPUS_PER_NODE = 8
FAULTY_SHARE = 0.001


def exposition(gpus: int, faulty: set[int]) -> bytes:
    lines: list[str] = []
    names = [*FIELDS, XID_COUNT]
    for name in names:
        lines.append(f"# TYPE {name} {'counter' if name != XID_COUNT else 'gauge'}")
        for g in range(gpus):
            node, index = divmod(g, GPUS_PER_NODE)
            labels = f'gpu="{index}",UUID="GPU-{g:08d}",pci_bus_id="00000000:{index * 16 + 16:02X}:00.0",Hostname="node-{node:05d}"'
            if name == XID_COUNT:
                labels += ',xid="0"'
            value = (
                1
                if g in faulty and name in ("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL")
                else 0
            )
            lines.append(f"{name}{{{labels}}} {value}")
    return ("\n".join(lines) + "\n").encode()


def scalar(url: str, query: str) -> float:
    params = urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(f"{url}/api/v1/query?{params}", timeout=60) as answer:
        result = json.loads(answer.read())["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


def rule_groups(url: str) -> dict[str, dict[str, float]]:
    """Each rule group's last evaluation time (s) and interval, as Prometheus reports them."""
    with urllib.request.urlopen(f"{url}/api/v1/rules", timeout=60) as answer:
        groups = json.loads(answer.read())["data"]["groups"]
    return {
        g["name"]: {
            "evaluation_s": round(float(g.get("evaluationTime", 0.0)), 3),
            "interval_s": g["interval"],
        }
        for g in groups
    }


def wait(check: object, limit_s: float, what: str) -> None:
    deadline = time.monotonic() + limit_s
    while True:
        try:
            if check():  # type: ignore[operator]
                return
        except OSError:
            pass  # Prometheus not listening yet
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.5)


def one_size(gpus: int) -> dict[str, object]:
    interval = 5 if gpus <= 20_000 else 20
    faulty = set(range(0, gpus, int(1 / FAULTY_SHARE)))
    expected = {(f"node-{g // GPUS_PER_NODE:05d}", str(g % GPUS_PER_NODE)) for g in faulty}
    exporter = LoopbackExporter(exposition(gpus, set()))
    changed_body = exposition(gpus, faulty)
    result: dict[str, object] = {
        "gpus": gpus,
        "series": gpus * (len(FIELDS) + 1),
        "exposition_bytes": len(changed_body),
        "faulty_gpus": len(faulty),
        "scrape_interval_s": interval,
    }

    def attempt(name: str, step: Callable[[], dict[str, object]]) -> None:
        # A step this machine cannot do (a query past Prometheus's timeout) is recorded with
        # Prometheus's reason; the others still run.
        try:
            result[name] = step()
        except (OSError, ValueError) as exc:
            result[name] = {"error": f"{type(exc).__name__}: {exc}"[:1000]}
        print(json.dumps({name: result[name]}), flush=True)

    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory() as tmp,
        prometheus(
            Path(tmp),
            exporter.target,
            rule_files=(RULES,),
            scrape_interval_s=interval,
            scrape_timeout_s=interval - 1,
        ) as url,
    ):
        wait(lambda: scalar(url, "count(DCGM_FI_DEV_ECC_DBE_VOL_TOTAL)") == gpus, 900, "the baseline scrape")
        baseline_scrapes = exporter.scrapes
        wait(lambda: exporter.scrapes >= baseline_scrapes + 1, 900, "a second baseline scrape")
        result["ingest_s"] = round(time.perf_counter() - started, 1)
        source = PrometheusChangesSource(url, window="1m", timeout_s=900)
        recorded = PrometheusChangesSource(url, recorded=True, timeout_s=900)
        detector = DcgmDetector("bench")
        by_rule_detector = DcgmDetector("bench")  # the recorded rounds' own, from the same baseline

        def full() -> dict[str, object]:
            samples, done = source.ask_full()
            started = time.perf_counter()
            detector.observe_readings(group_samples(samples), datetime.now(UTC))
            by_rule_detector.observe_readings(group_samples(samples), datetime.now(UTC))
            return {**done.__dict__, "detector_s": round(time.perf_counter() - started, 4)}

        attempt("full", full)
        if gpus <= 20_000:  # at 100k one query for every series outlasts Prometheus's 2-minute timeout
            attempt("full_one_query", lambda: source.ask(DCGM_PROMQL, "full")[1].__dict__)
        exporter.body = changed_body
        wait(
            lambda: scalar(url, "sum(DCGM_FI_DEV_ECC_DBE_VOL_TOTAL)") == len(faulty),
            900,
            "the faults scraped",
        )
        scraped_at = time.perf_counter()

        def changes() -> dict[str, object]:
            samples, done = source.ask_marked(source.attention, "changes")
            started = time.perf_counter()
            events = detector.observe_readings(group_samples(samples), datetime.now(UTC))
            detect_s = time.perf_counter() - started
            return {**done.__dict__, "detector_s": round(detect_s, 4), "events_found": len(events)}

        attempt("changes", changes)

        def by_rule() -> dict[str, object]:
            wait(lambda: scalar(url, f"count({RECORDED})") >= len(faulty), 900, "the rule to see the faults")
            marked_after_s = round(time.perf_counter() - scraped_at, 1)
            rounds = []
            for _ in range(2):  # the second: the faults still marked, and not reported again
                samples, done = recorded.ask_recorded()
                marked = {(s.labels.get("Hostname"), s.labels.get("gpu")) for s in samples}
                events = by_rule_detector.observe_readings(group_samples(samples), datetime.now(UTC))
                rounds.append(
                    {
                        **done.__dict__,
                        "faults_marked": len(marked & expected),
                        "events_found": len(events),
                    }
                )
            return {
                "marked_after_scrape_s": marked_after_s,
                "every_fault_marked": all(r["faults_marked"] == len(faulty) for r in rounds),
                "rounds": rounds,
                "rule_groups": rule_groups(url),
            }

        attempt("recorded", by_rule)
    exporter.close()
    result["prometheus_part_s"] = round(time.perf_counter() - started, 1)
    return result


def exporters_round(gpus: int, concurrency: int = 32) -> dict[str, object]:
    """The round without Prometheus (``AIOPS_DCGM_EXPORTERS``): one exporter per node (files served
    by ``python -m http.server`` in its own process), every one read in full each round."""
    nodes = gpus // GPUS_PER_NODE
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        text = exposition(gpus, set()).decode()
        per_node: dict[str, list[str]] = {}
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            node = line[line.index('Hostname="') + 10 :].split('"', 1)[0]
            per_node.setdefault(node, []).append(line)
        for node, lines in per_node.items():
            (root / node).mkdir()
            (root / node / "metrics").write_text("\n".join(lines) + "\n")
        [port] = free_ports(1)
        server = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", tmp],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            urls = [f"http://127.0.0.1:{port}/{node}/metrics" for node in sorted(per_node)]

            def answers() -> bool:
                with urllib.request.urlopen(urls[0], timeout=5) as answer:
                    return bool(answer.status == 200)

            wait(answers, 60, "the exporters")
            source = ExporterSource(urls, timeout_s=60, concurrency=concurrency, names=METRIC_NAMES)
            detector = DcgmDetector("bench")
            rounds = []
            for _ in range(2):  # the first is the detector's baseline
                before = source.bytes_read
                started = time.perf_counter()
                samples = asyncio.run(source.scrape())
                fetched = time.perf_counter() - started
                detector.observe_readings(group_samples(samples), datetime.now(UTC))
                rounds.append(
                    {
                        "wall_s": round(time.perf_counter() - started, 3),
                        "fetch_and_parse_s": round(fetched, 3),
                        "bytes": source.bytes_read - before,
                        "series": len(samples),
                    }
                )
        finally:
            server.terminate()
            server.wait(timeout=30)
    return {"exporters": nodes, "concurrency": concurrency, "down": len(source.down), "rounds": rounds}


def main() -> None:
    args = sys.argv[1:]
    only_exporters = "--exporters-only" in args
    sizes = [int(a) for a in args if not a.startswith("--")] or [1_000, 16_000, 100_000]
    results = []
    OUT.parent.mkdir(parents=True, exist_ok=True)
    out = OUT.with_name("dcgm_fleet_exporters.json") if only_exporters else OUT
    if not only_exporters:
        try:
            prometheus_binary()
        except FileNotFoundError as exc:
            raise SystemExit(str(exc)) from None
    for gpus in sizes:
        result: dict[str, object] = {"gpus": gpus}
        if not only_exporters:
            try:
                result = one_size(gpus)
            except TimeoutError as exc:  # Prometheus could not even ingest the fleet in time
                result["prometheus_error"] = str(exc)
        result["exporters"] = exporters_round(gpus)
        results.append(result)
        print(json.dumps(result), flush=True)
        out.write_text(json.dumps(results, indent=2))  # after each size: the big ones take long
    print(f"written {out}")


if __name__ == "__main__":
    main()
