"""The Prometheus recording and alert rules under deploy/prometheus/: valid, and doing what they say
(promtool's own rule unit tests: GPU -> node -> rack -> cluster, the DCGM-limit alerts)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")
INSTALL = (
    "`sudo apt-get install -y prometheus` (Debian/Ubuntu; promtool comes with it); CI installs it in .ci/run"
)

if PROMTOOL is None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"promtool is missing in CI: {INSTALL}", pytrace=False)
    pytest.skip(f"promtool is not installed: {INSTALL}", allow_module_level=True)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=RULES, capture_output=True, text=True, timeout=120)


def test_the_rule_files_are_valid() -> None:
    checked = promtool("check", "rules", "recording-rules.yml", "alert-rules.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_rules_aggregate_gpu_to_node_to_rack_to_cluster_and_alert_at_dcgm_limits() -> None:
    tested = promtool("test", "rules", "rules-test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
