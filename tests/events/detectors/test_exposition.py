"""Reading dcgm-exporter samples: the text format, the twin's exporter over HTTP, and a real
Prometheus that scrapes it (prometheus-api-client)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from events.detectors import DcgmDetector, ExporterSource, PrometheusSource
from events.detectors.dcgm import METRIC_NAMES
from events.detectors.exposition import parse_exposition
from events.models import EccEvent
from tests.fleet.exporter_server import serving
from tests.system_packages import require
from tests.waiting import eventually

REAL = """\
# HELP DCGM_FI_DEV_SM_CLOCK SM clock frequency (in MHz).
# TYPE DCGM_FI_DEV_SM_CLOCK gauge
DCGM_FI_DEV_SM_CLOCK{gpu="0",UUID="GPU-927d7444-b45a-7c49-8402-5e686e46a026",pci_bus_id="00000000:00:09.0",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="6d6d7dc3ce21",DCGM_FI_DRIVER_VERSION="535.183.01"} 345
DCGM_EXP_XID_ERRORS_COUNT{gpu="0",UUID="GPU-1",xid="43",err_msg="a \\"quoted\\" msg, with comma"} 2 1700000000000
garbage line
DCGM_FI_DEV_GPU_TEMP{gpu="2" 5
DCGM_FI_DEV_GPU_TEMP{gpu="3"} NaNx
"""


def test_real_exporter_text_parses_with_escapes_and_timestamps_and_bad_lines_are_counted():
    samples, malformed = parse_exposition(REAL)
    assert [s.name for s in samples] == ["DCGM_FI_DEV_SM_CLOCK", "DCGM_EXP_XID_ERRORS_COUNT"]
    assert samples[0].labels["pci_bus_id"] == "00000000:00:09.0" and samples[0].value == 345
    assert samples[1].labels["err_msg"] == 'a "quoted" msg, with comma' and samples[1].value == 2
    assert malformed == 3


def test_only_the_wanted_metrics_are_parsed():
    samples, _ = parse_exposition(REAL, names={"DCGM_EXP_XID_ERRORS_COUNT"})
    assert [s.name for s in samples] == ["DCGM_EXP_XID_ERRORS_COUNT"]


@pytest.mark.slow
async def test_the_detector_scrapes_the_twins_exporter_over_http(twin):
    async with serving(twin) as base:
        source = ExporterSource(f"{base}/metrics", names=METRIC_NAMES)
        detector = DcgmDetector("sim-a")
        assert detector.observe(await source.scrape(), twin.now()) == []
        twin.inject_ecc("node-009", 4, "remap_failure")
        events = detector.observe(await source.scrape(), twin.now())
    [ecc] = [e for e in events if isinstance(e, EccEvent)]
    assert ecc.node == "node-009" and ecc.findings == ["remap_failure"] and source.malformed == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def prometheus(binary: str, data: Path, target: str) -> Iterator[str]:
    port = free_port()
    config = data / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\n"
        f"scrape_configs:\n  - job_name: dcgm\n    static_configs: [{{targets: ['{target}']}}]\n"
    )
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={data / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.slow
async def test_the_detector_reads_dcgm_through_a_real_prometheus(twin, tmp_path):
    binary = shutil.which("prometheus")
    require(binary, "the prometheus binary", "sudo apt-get install -y prometheus")
    assert binary is not None
    twin.inject_ecc("node-011", 6, "remap_pending")
    async with serving(twin) as base:
        with prometheus(binary, tmp_path, base.removeprefix("http://")) as url:
            source = PrometheusSource(url)

            async def scraped() -> bool:
                try:
                    return any(s.name == "DCGM_FI_DEV_ROW_REMAP_PENDING" for s in await source.scrape())
                except OSError:
                    return False  # not ready yet

            await eventually(scraped, within_s=60, what="Prometheus to scrape the twin")
            events = DcgmDetector("sim-a").observe(await source.scrape(), twin.now())
    [ecc] = [e for e in events if isinstance(e, EccEvent)]
    assert (ecc.node, ecc.gpu, ecc.findings) == ("node-011", 6, ["remap_pending"])
    assert ecc.pci_bus_id == "0000:ba:00.0"
