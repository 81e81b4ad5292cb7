"""The fleet twin's size is a setting: ``AIOPS_FLEET_NODES`` / ``aiops up --fleet-nodes N``."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from aiops.backends import fleet_spec, twin_for
from aiops.cli import app
from aiops.ops_cli import call_tool
from aiops.settings import Settings
from fleet import FleetSpec
from tests.aiops.up_process import UpProcess
from tests.waiting import eventually


def test_without_the_setting_the_twin_is_the_small_sixteen_node_fleet() -> None:
    assert fleet_spec(Settings()) == FleetSpec.small(seed=Settings().seed)


def test_a_sized_twin_has_the_nodes_asked_for_with_leaves_racks_spares_and_jobs() -> None:
    twin = twin_for(Settings(fleet_nodes=128, cluster="big-a"))
    spec = twin.spec
    assert len(twin.nodes) == 128 and spec.cluster == "big-a"
    assert spec.leaf_switches == 16 and spec.nodes_per_leaf == 8 and spec.nodes_per_rack == 4
    assert len(twin.spare_nodes()) == 3
    # One 8-node job per leaf, as many nodes idle as spare.
    assert len(twin.jobs) == 15


def test_a_thousand_node_spec_keeps_about_one_spare_in_fifty() -> None:
    spec = FleetSpec.sized(1000)
    assert spec.node_count == 1000 and spec.spare_nodes == 20 and len(spec.jobs) == 120


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--fleet-nodes", "0"], "multiple of 8 nodes"),
        (["--fleet-nodes", "-16"], "multiple of 8 nodes"),
        (["--fleet-nodes", "100"], "got 100"),
        (["--fleet-nodes", "8"], "at least 16"),
        (["--fleet-nodes", "20000"], "at most 16384"),
        (["--fleet-nodes", "64", "--backend", "kubernetes"], "the kubernetes backend has the nodes it has"),
    ],
)
def test_a_bad_fleet_size_is_one_readable_line_and_exit_status_two(args: list[str], says: str) -> None:
    result = CliRunner().invoke(app, ["up", *args])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("invalid setting fleet_nodes:") and says in lines[0]


def test_a_fleet_size_that_is_no_number_in_the_environment_is_refused_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIOPS_FLEET_NODES", "lots")
    result = CliRunner().invoke(app, ["up"])
    assert result.exit_code == 2
    assert "invalid setting fleet_nodes" in result.output


@pytest.mark.slow
async def test_aiops_up_on_a_128_node_twin_starts_and_its_mcp_tools_answer(tmp_path: Path) -> None:
    with UpProcess(tmp_path, ["--fleet-nodes", "128"]) as up:
        await up.ready()
        assert "fleet twin  sim-a: 128 nodes, 1024 GPUs" in up.text()
        answer = await call_tool(up.mcp_url, up.token, "list_nodes", {})
        assert answer.ok, answer.text
        assert isinstance(answer.structured, dict)
        assert answer.structured["total"] == 128
        up.terminate()
        await eventually(up.exited, within_s=60, what="aiops up to stop on SIGTERM")
        assert up.proc is not None and up.proc.returncode == 0, up.text()
