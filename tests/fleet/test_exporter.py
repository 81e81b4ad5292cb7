"""The twin's metrics in dcgm-exporter's format, over HTTP."""

from __future__ import annotations

import asyncio
import re
import urllib.error
import urllib.request

import pytest

from fleet.exporter import exporter_pci_bus_id, render_metrics
from tests.fleet.exporter_server import serving

SERIES = re.compile(r"^(?P<name>\w+)\{(?P<labels>[^}]*)\} (?P<value>\S+)$")


def series(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        m = SERIES.match(line)
        if m and m["name"] == name:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m["labels"]))
            out.append((labels, float(m["value"])))
    return out


def test_every_gpu_is_exported_with_dcgm_exporters_labels(twin):
    text = render_metrics(twin)
    temps = series(text, "DCGM_FI_DEV_GPU_TEMP")
    assert len(temps) == 128
    labels, _ = next(s for s in temps if s[0]["Hostname"] == "node-003" and s[0]["gpu"] == "3")
    assert labels["pci_bus_id"] == "00000000:5D:00.0" and labels["device"] == "nvidia3"
    assert labels["UUID"].startswith("GPU-") and labels["modelName"] == "NVIDIA H100 80GB HBM3"
    assert labels["DCGM_FI_DRIVER_VERSION"] == twin.spec.driver_version
    assert "# TYPE DCGM_FI_DEV_ECC_DBE_VOL_TOTAL counter" in text
    assert "# TYPE DCGM_FI_DEV_ROW_REMAP_PENDING gauge" in text


def test_faults_show_in_the_counters_and_the_windowed_xid_count(twin):
    twin.inject_ecc("node-005", 2, "dbe")
    text = render_metrics(twin, "node-005")
    dbe = {lab["gpu"]: v for lab, v in series(text, "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL")}
    assert dbe["2"] == 1 and dbe["1"] == 0
    xids = {(lab["gpu"], lab["xid"]): v for lab, v in series(text, "DCGM_EXP_XID_ERRORS_COUNT")}
    assert xids == {("2", "48"): 1, ("2", "63"): 1}
    [(last, value)] = [s for s in series(text, "DCGM_FI_DEV_XID_ERRORS") if s[0]["gpu"] == "2"]
    assert value == 63 and last["err_code"] == "63"


def test_a_throttled_gpu_reports_lower_clocks_and_thermal_reasons(twin):
    twin.advance(10)
    twin.throttle_gpu("node-004", 6)
    text = render_metrics(twin, "node-004")
    clocks = {lab["gpu"]: v for lab, v in series(text, "DCGM_FI_DEV_SM_CLOCK")}
    reasons = {lab["gpu"]: v for lab, v in series(text, "DCGM_FI_DEV_CLOCKS_EVENT_REASONS")}
    assert clocks["6"] < clocks["5"] and reasons["6"] == 0x60 and reasons["5"] == 0


def test_a_gpu_off_the_bus_disappears_like_on_a_real_exporter(twin):
    twin.inject_xid("node-003", 3, 79)
    gpus = {lab["gpu"] for lab, _ in series(render_metrics(twin, "node-003"), "DCGM_FI_DEV_GPU_TEMP")}
    assert "3" not in gpus and len(gpus) == 7


def test_pci_ids_take_dcgms_eight_digit_upper_case_form():
    assert exporter_pci_bus_id("0000:18:00.0") == "00000000:18:00.0"
    assert exporter_pci_bus_id("0001:ab:00.0") == "00000001:AB:00.0"


def fetch(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


@pytest.mark.slow
async def test_metrics_are_served_over_http_for_the_fleet_and_per_node(twin):
    async with serving(twin) as base:
        status, ctype, body = await asyncio.to_thread(fetch, f"{base}/metrics")
        assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
        assert len(series(body, "DCGM_FI_DEV_GPU_TEMP")) == 128
        status, _, body = await asyncio.to_thread(fetch, f"{base}/metrics?node=node-002")
        assert {lab["Hostname"] for lab, _ in series(body, "DCGM_FI_DEV_GPU_TEMP")} == {"node-002"}
        status, _, body = await asyncio.to_thread(fetch, f"{base}/metrics?node=node-999")
        assert status == 404 and "node-999" in body
