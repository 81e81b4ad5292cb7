"""The Prometheus recording and alert rules under deploy/prometheus/: valid, and doing what they say
(promtool's own rule unit tests: GPU -> node -> rack -> cluster, the DCGM-limit alerts)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from events.detectors.prometheus_changes import RECORDED, attention_expr

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")
INSTALL = (
    "`sudo apt-get install -y prometheus` (Debian/Ubuntu; promtool comes with it); CI installs it in .ci/run"
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    if PROMTOOL is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"promtool is missing in CI: {INSTALL}", pytrace=False)
        pytest.skip(f"promtool is not installed: {INSTALL}")
    return subprocess.run([PROMTOOL, *args], cwd=RULES, capture_output=True, text=True, timeout=120)


def test_the_rule_files_are_valid() -> None:
    checked = promtool("check", "rules", "recording-rules.yml", "alert-rules.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_rules_aggregate_gpu_to_node_to_rack_to_cluster_and_alert_at_dcgm_limits() -> None:
    tested = promtool("test", "rules", "rules-test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_recorded_attention_rule_is_the_detectors_own_question() -> None:
    rules = yaml.safe_load((RULES / "recording-rules.yml").read_text())
    recorded = {r["record"]: r["expr"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    assert recorded[RECORDED] == attention_expr("1m")
