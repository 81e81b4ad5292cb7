"""Silent-data-corruption tools through the real MCP client: stop a job, DCGM diagnostics by level,
their verdict, and a restart from a checkpoint written before the corruption.

The small fleet after 45 simulated minutes: train-02 on node-009..012 has checkpointed twice."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from mcp_server.gate.guard import DENIED
from mcp_server.gate.policy import PolicyGate
from tests.mcp_server.remediation_rig import Rig, build_rig, connected
from tests.mcp_server.support import AGENT, VIEWER

WHY = "the loss went NaN: suspected silent data corruption"


@pytest.fixture
async def rig(policy_gate: PolicyGate) -> AsyncIterator[Rig]:
    async with connected(build_rig(policy_gate)) as running:
        yield running


async def test_diagnostics_are_refused_with_a_readable_error_while_the_job_runs(rig: Rig) -> None:
    message = await rig.error("run_diagnostics", node="node-010", level=3, reason=WHY)
    assert "idle" in message and "train-02" in message and "stop the job first" in message


async def test_level_3_finds_the_corrupting_gpu_after_the_job_is_stopped(rig: Rig) -> None:
    rig.as_(AGENT)
    rig.twin.inject_sdc("node-010", 3, "nan")
    stopped = await rig.ok("stop_job", job="train-02", reason=WHY, idempotency_key="i/stop")
    started = await rig.ok("run_diagnostics", node="node-010", level=3, reason=WHY, idempotency_key="i/diag")
    running = await rig.ok("diagnostics_report", node="node-010")
    rig.twin.advance(900)
    report = await rig.ok("diagnostics_report", node="node-010")

    assert stopped["changed"] and rig.twin.job("train-02").state == "stalled"
    assert started["changed"] and started["data"]["duration_s"] == 900
    assert running["state"] == "running" and running["gpus"] == []
    assert report["state"] == "failed" and report["failing_gpus"] == [3]
    assert "diagnostic" in report["gpus"][3]["failed_tests"]
    assert [a[1] for a in rig.audited()] == ["stop_job", "run_diagnostics"]


async def test_level_1_passes_a_gpu_that_only_computes_wrong_results(rig: Rig) -> None:
    rig.twin.inject_sdc("node-010", 3, "nan")
    await rig.ok("stop_job", job="train-02", reason=WHY)
    await rig.ok("run_diagnostics", node="node-010", level=1, reason=WHY)
    rig.twin.advance(60)
    report = await rig.ok("diagnostics_report", node="node-010")
    assert report["state"] == "passed" and report["tests"] == ["software"]


async def test_a_viewer_may_read_diagnostics_but_not_run_them(rig: Rig) -> None:
    rig.as_(VIEWER)
    assert (await rig.ok("diagnostics_report", node="node-013"))["state"] == "none"
    message = await rig.error("run_diagnostics", node="node-013", level=1, reason=WHY)
    assert DENIED in message and "run_diagnostics" in message


async def test_checkpoint_status_lists_the_kept_checkpoints(rig: Rig) -> None:
    status = await rig.ok("checkpoint_status", job="train-02")
    steps = [c["step"] for c in status["checkpoints"]]
    assert len(steps) == 2 and steps == sorted(steps) and steps[-1] == status["last_checkpoint_step"]


async def test_a_restart_at_or_before_a_step_restores_the_older_checkpoint_and_says_what_it_dropped(
    rig: Rig,
) -> None:
    first, second = [c["step"] for c in (await rig.ok("checkpoint_status", job="train-02"))["checkpoints"]]
    restarted = await rig.ok(
        "restart_from_checkpoint", job="train-02", reason=WHY, at_or_before_step=second - 1
    )
    after = await rig.ok("checkpoint_status", job="train-02")

    assert restarted["data"]["resume_step"] == first
    assert restarted["data"]["discarded_checkpoints"] == str(second)
    assert [c["step"] for c in after["checkpoints"]] == [first]
    assert rig.audit.entries[-1].arguments["at_or_before_step"] == second - 1


async def test_no_checkpoint_early_enough_is_a_readable_error_and_nothing_changes(rig: Rig) -> None:
    message = await rig.error("restart_from_checkpoint", job="train-02", reason=WHY, at_or_before_step=5)
    assert "no checkpoint at or before step 5" in message
    assert rig.twin.job("train-02").state == "running"
