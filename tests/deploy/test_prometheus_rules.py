"""The Prometheus recording and alert rules under deploy/prometheus/: valid, and doing what they say
(promtool's own rule unit tests: GPU -> node -> rack -> cluster, the DCGM-limit alerts)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from events.detectors.prometheus_changes import RECORDED, attention_rules

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


def test_a_double_bit_error_arriving_while_evaluation_lags_is_still_marked_for_the_detector() -> None:
    """Every group evaluated only every 4 minutes (as at 100k GPUs): the fault that came between two
    evaluations is in gpu:dcgm_attention at the next, and stays until the GPU is reset."""
    tested = promtool("test", "rules", "rules-test-lag.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_recorded_attention_rules_are_the_detectors_own_question() -> None:
    rules = yaml.safe_load((RULES / "recording-rules.yml").read_text())
    recorded = {r["record"]: r["expr"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    expected = attention_rules()
    assert RECORDED in expected
    assert {name: recorded.get(name) for name in expected} == expected


def test_the_cheap_state_rules_are_evaluated_apart_from_the_rate_rules() -> None:
    """A group is evaluated as one: the state terms (instant selectors) and the union the detector
    reads must not wait behind an hour of samples of every GPU."""
    rules = yaml.safe_load((RULES / "recording-rules.yml").read_text())
    group_of = {r["record"]: g["name"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    home = group_of[RECORDED]
    ranged = [name for name, expr in attention_rules().items() if "[" in expr]
    assert ranged and all(group_of[name] != home for name in ranged)
