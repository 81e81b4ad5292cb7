"""DCGM at fleet scale against a real Prometheus: after one full read, a round asks only for the GPUs
whose fields changed (or are past a DCGM limit), and the detector finds the fault from that alone."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from aiops.loopback_prometheus import LoopbackExporter, prometheus
from events.detectors.dcgm import FIELDS, XID_COUNT, DcgmDetector, group_samples
from events.detectors.prometheus_changes import RECORDED, PrometheusChangesSource
from events.models import EccEvent
from tests.waiting import eventually

pytestmark = pytest.mark.slow

INSTALL = "`sudo apt-get install -y prometheus` (Debian/Ubuntu); CI installs it in .ci/run"
if shutil.which("prometheus") is None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"prometheus is missing in CI: {INSTALL}", pytrace=False)
    pytest.skip(f"the prometheus binary is not installed: {INSTALL}", allow_module_level=True)

GPUS = 8
RULES = Path(__file__).resolve().parents[3] / "deploy" / "prometheus" / "recording-rules.yml"


def exposition(dbe: dict[int, int]) -> bytes:
    lines = []
    for name in [*FIELDS, XID_COUNT]:
        for g in range(GPUS):
            labels = f'gpu="{g}",UUID="GPU-{g}",pci_bus_id="00000000:{16 + g:02X}:00.0",Hostname="node-1"'
            labels += ',xid="0"' if name == XID_COUNT else ""
            value = dbe.get(g, 0) if name == "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL" else 0
            lines.append(f"{name}{{{labels}}} {value}")
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def exporter() -> Iterator[LoopbackExporter]:
    with LoopbackExporter(exposition({})) as served:
        yield served


async def answered(source: PrometheusChangesSource, query: str, check: object) -> bool:
    try:
        samples, _ = await asyncio.to_thread(source.ask, query)
    except OSError:
        return False  # not listening yet
    return bool(check(samples))  # type: ignore[operator]


async def test_a_round_reads_only_the_gpu_that_changed_and_finds_its_fault(
    exporter: LoopbackExporter, tmp_path: Path
) -> None:
    with prometheus(tmp_path, exporter.target, evaluation_interval_s=1) as url:
        source = PrometheusChangesSource(url, window="1m", prefer_recorded=True)
        total = f'count(DCGM_FI_DEV_ECC_DBE_VOL_TOTAL{{Hostname="node-1"}}) == {GPUS}'
        await eventually(lambda: answered(source, total, bool), within_s=60, what="the first scrape")
        detector = DcgmDetector("prod-a")

        baseline = await source.scrape()
        assert source.last is not None and source.last.kind == "full"
        assert len(baseline) == GPUS * (len(FIELDS) + 1)
        assert detector.observe_readings(group_samples(baseline), datetime.now(UTC)) == []

        exporter.body = exposition({5: 1})  # GPU 5: an uncorrectable ECC error
        await eventually(
            lambda: answered(source, "sum(DCGM_FI_DEV_ECC_DBE_VOL_TOTAL) == 1", bool),
            within_s=30,
            what="the fault scraped",
        )
        changed = await source.scrape()

    assert not source.recorded  # this Prometheus has no recording rules: the question at query time
    assert source.last is not None and source.last.kind == "changes"
    assert {s.labels["gpu"] for s in changed} == {"5"}  # 12 series of one GPU, not 96
    assert source.last.bytes < 10_000
    (event,) = detector.observe_readings(group_samples(changed), datetime.now(UTC))
    assert isinstance(event, EccEvent) and (event.node, event.gpu) == ("node-1", 5)
    assert "dbe" in event.findings


def fast_rules(into: Path) -> Path:
    """deploy/prometheus/recording-rules.yml with every group evaluated each second (as deployed they
    run every 30 s to 2 m; the test should not wait that long)."""
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        group["interval"] = "1s"
    path = into / "recording-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    return path


async def test_with_the_recording_rules_loaded_a_double_bit_error_is_reported_once_over_many_rounds(
    exporter: LoopbackExporter, tmp_path: Path
) -> None:
    """The recorded answer holds the GPU until it is reset (a state, not a 1-minute increase), so
    each round reads it again and the detector, comparing with what it saw, reports it once."""
    with prometheus(
        tmp_path, exporter.target, rule_files=(fast_rules(tmp_path),), evaluation_interval_s=1
    ) as url:
        source = PrometheusChangesSource(url, prefer_recorded=True)
        total = f'count(DCGM_FI_DEV_ECC_DBE_VOL_TOTAL{{Hostname="node-1"}}) == {GPUS}'
        await eventually(lambda: answered(source, total, bool), within_s=60, what="the first scrape")
        await eventually(lambda: asyncio.to_thread(source.rule_loaded), within_s=30, what="the rules loaded")
        detector = DcgmDetector("prod-a")
        assert detector.observe_readings(group_samples(await source.scrape()), datetime.now(UTC)) == []
        assert source.recorded

        exporter.body = exposition({5: 1})
        await eventually(
            lambda: answered(source, RECORDED, lambda got: {s.labels["gpu"] for s in got} == {"5"}),
            within_s=30,
            what="the rule marking GPU 5",
        )
        events = []
        for _ in range(3):
            changed = await source.scrape()
            assert source.last is not None and source.last.kind == "recorded"
            assert {s.labels["gpu"] for s in changed} == {"5"}
            events += detector.observe_readings(group_samples(changed), datetime.now(UTC))

    (event,) = events
    assert isinstance(event, EccEvent) and (event.node, event.gpu) == ("node-1", 5)
    assert "dbe" in event.findings
