"""The engine against a scripted tool client (the engine's I/O seam), with the bundled runbooks."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from contracts.client import ToolResult, ToolSpec
from contracts.refusal import Refusal
from runbooks.engine import RunbookEngine
from runbooks.library import RunbookLibrary
from runbooks.state import MemoryRunStore

READ_ONLY = {"describe_node", "checkpoint_status", "job_for_gpu", "service_status"}


class ScriptedTools:
    """Answers tool calls from a table; records every call."""

    def __init__(self, answers: dict[str, Any] | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.answers = answers or {}
        self.isolated = False

    async def read_only_tools(self) -> set[str]:
        return READ_ONLY

    async def tool_names(self) -> set[str]:
        return READ_ONLY | {"isolate_gpu", "restart_from_checkpoint"}

    async def tool_specs(self) -> list[ToolSpec]:
        return [ToolSpec(name=name, read_only=name in READ_ONLY) for name in await self.tool_names()]

    async def call(self, tool: str, arguments: dict[str, Any]) -> ToolResult:
        self.calls.append((tool, arguments))
        answer = self.answers.get(tool)
        if callable(answer):
            return answer(arguments)
        if isinstance(answer, ToolResult):
            return answer
        if tool == "describe_node":
            return ToolResult(
                ok=True, structured={"gpus": [{"index": i, "isolated": self.isolated} for i in range(8)]}
            )
        if tool == "isolate_gpu":
            self.isolated = True
            return ToolResult(
                ok=True, structured={"changed": True, "policy": {"decision": "allow", "reasons": []}}
            )
        if tool == "checkpoint_status":
            return ToolResult(ok=True, structured={"has_checkpoint": True, "state": "restarting"})
        if tool == "restart_from_checkpoint":
            return ToolResult(ok=True, structured={"changed": True, "policy": {"decision": "allow"}})
        raise AssertionError(f"unexpected tool {tool}")

    def mutations(self) -> list[tuple[str, dict[str, Any]]]:
        return [c for c in self.calls if c[0] not in READ_ONLY]


def engine(tools: ScriptedTools, store: MemoryRunStore | None = None) -> RunbookEngine:
    return RunbookEngine(tools, store or MemoryRunStore(), RunbookLibrary.load())


async def test_isolate_gpu_runs_its_steps_and_verifies():
    tools = ScriptedTools()
    state = await engine(tools).run("isolate-gpu", {"node": "node-003", "gpu": 3}, run_id="inc-1/isolate-gpu")
    assert state.status == "succeeded"
    assert [c[0] for c in tools.calls] == ["describe_node", "isolate_gpu", "describe_node"]
    assert tools.mutations()[0][1]["idempotency_key"] == "inc-1/isolate-gpu/isolate"
    assert tools.mutations()[0][1]["gpu"] == 3


async def test_a_failed_precondition_stops_before_any_mutation():
    tools = ScriptedTools({"checkpoint_status": ToolResult(ok=True, structured={"has_checkpoint": False})})
    state = await engine(tools).run("restart-from-checkpoint", {"job": "train-01"}, run_id="r1")
    assert state.status == "precondition_failed"
    assert "no checkpoint" in (state.error or "")
    assert tools.mutations() == []


async def test_a_policy_denial_ends_the_run_as_denied_and_records_the_decision():
    denied = ToolResult.refused(
        Refusal(kind="denied", rule="blast-radius", reasons=["blast radius"]),
        "Error executing tool isolate_gpu: policy denied isolate_gpu on n/gpu3: blast radius",
    )
    tools = ScriptedTools({"isolate_gpu": denied})
    state = await engine(tools).run("isolate-gpu", {"node": "n", "gpu": 3}, run_id="r2")
    assert state.status == "denied"
    step = state.step("isolate")
    assert step is not None and step.decision == "deny" and step.status == "failed"


async def test_a_failed_verification_rolls_back():
    tools = ScriptedTools(
        {"describe_node": ToolResult(ok=True, structured={"gpus": [{"index": 3, "isolated": False}] * 8})}
    )
    state = await engine(tools).run("isolate-gpu", {"node": "n", "gpu": 3}, run_id="r3")
    assert state.status == "rolled_back"
    assert "does not show as isolated" in (state.error or "")


async def test_a_finished_run_is_returned_without_calling_anything_again():
    tools, store = ScriptedTools(), MemoryRunStore()
    await engine(tools, store).run("isolate-gpu", {"node": "n", "gpu": 1}, run_id="r4")
    calls = len(tools.calls)
    again = await engine(tools, store).run("isolate-gpu", {"node": "n", "gpu": 1}, run_id="r4")
    assert again.status == "succeeded" and len(tools.calls) == calls


async def test_a_run_interrupted_mid_mutation_resumes_with_the_same_idempotency_key():
    store = MemoryRunStore()

    class Crash(Exception):
        pass

    def crash(arguments: dict[str, Any]) -> ToolResult:
        raise Crash

    first = ScriptedTools({"isolate_gpu": crash})
    with contextlib.suppress(Crash):
        await engine(first, store).run("isolate-gpu", {"node": "n", "gpu": 2}, run_id="r5")
    saved = await store.load("r5")
    assert saved is not None and saved.step("isolate") is not None
    assert saved.step("isolate").status == "running"  # type: ignore[union-attr]

    second = ScriptedTools()
    state = await engine(second, store).run("isolate-gpu", {"node": "n", "gpu": 2}, run_id="r5")
    assert state.status == "succeeded"
    keys = [c[1]["idempotency_key"] for c in first.mutations() + second.mutations()]
    assert keys == ["r5/isolate", "r5/isolate"]
    # the precondition that had finished was not repeated
    assert [c[0] for c in second.calls] == ["isolate_gpu", "describe_node"]


async def test_a_dry_run_sends_mutations_with_dry_run_and_skips_verification():
    tools = ScriptedTools()
    state = await engine(tools).run("isolate-gpu", {"node": "n", "gpu": 0}, run_id="r6", dry_run=True)
    assert state.status == "dry_run"
    assert tools.mutations()[0][1]["dry_run"] is True
    assert [c[0] for c in tools.calls] == ["describe_node", "isolate_gpu"]


async def test_a_step_that_hangs_times_out_and_fails_the_run():
    release = asyncio.Event()

    class Slow(ScriptedTools):
        async def call(self, tool: str, arguments: dict[str, Any]) -> ToolResult:
            if tool == "isolate_gpu":
                await release.wait()
            return await super().call(tool, arguments)

    lib = RunbookLibrary.load()
    lib.get("isolate-gpu").steps[0].timeout_s = 0.01
    state = await RunbookEngine(Slow(), MemoryRunStore(), lib).run(
        "isolate-gpu", {"node": "n", "gpu": 0}, run_id="r7"
    )
    assert state.status == "failed"
    assert "timed out" in (state.error or "")


async def test_missing_or_unknown_parameters_are_refused():
    import pytest

    from runbooks.engine import RunbookParamError

    with pytest.raises(RunbookParamError, match="needs parameter 'gpu'"):
        await engine(ScriptedTools()).run("isolate-gpu", {"node": "n"}, run_id="r8")
    with pytest.raises(RunbookParamError, match="no parameters"):
        await engine(ScriptedTools()).run("isolate-gpu", {"node": "n", "gpu": 1, "force": True}, run_id="r9")


def returning(cordon: ToolResult) -> ScriptedTools:
    """return-to-service on a node that does not show in service after the uncordon."""
    ok = ToolResult(ok=True, structured={"changed": True, "policy": {"decision": "allow", "reasons": []}})
    return ScriptedTools(
        {
            "service_status": ToolResult(
                ok=True, structured={"can_return": True, "in_service": False, "why_not": "GPU 3 unhealthy"}
            ),
            "restore_gpus": ok,
            "uncordon_node": ok,
            "cordon_node": cordon,
        }
    )


async def test_a_return_to_service_that_does_not_verify_is_rolled_back_by_cordoning_again():
    tools = returning(
        ToolResult(ok=True, structured={"changed": True, "policy": {"decision": "allow", "reasons": []}})
    )
    state = await engine(tools).run("return-to-service", {"node": "node-010"}, run_id="inc-9/return")
    assert state.status == "rolled_back"
    assert [c[0] for c in tools.mutations()] == ["restore_gpus", "uncordon_node", "cordon_node"]
    cordon = tools.mutations()[-1][1]
    assert cordon["node"] == "node-010" and cordon["idempotency_key"] == "inc-9/return/cordon-again"
    step = state.step("cordon-again")
    assert step is not None and step.phase == "rollback" and step.status == "done"
    assert "not in service: GPU 3 unhealthy" in (state.error or "")


async def test_a_rollback_step_the_policy_denies_leaves_the_run_failed_and_says_why():
    denied = ToolResult.refused(
        Refusal(kind="denied", rule="roles", reasons=["no policy permits it"]),
        "Error executing tool cordon_node: policy denied cordon_node on node-010",
    )
    tools = returning(denied)
    state = await engine(tools).run("return-to-service", {"node": "node-010"}, run_id="r-deny")
    assert state.status == "failed"
    step = state.step("cordon-again")
    assert step is not None and step.decision == "deny" and step.status == "failed"
    assert "not in service" in (state.error or "") and "rollback incomplete" in (state.error or "")


async def test_a_rollback_step_that_needs_approval_does_not_wait_and_leaves_the_run_failed():
    approval = ToolResult.refused(
        Refusal(kind="approval_required", reasons=["a person approves it"], approval_id="apr-123"),
        "Error executing tool cordon_node: policy requires approval for cordon_node on node-010 "
        "(approval apr-123 pending)",
    )
    tools = returning(approval)
    state = await engine(tools).run("return-to-service", {"node": "node-010"}, run_id="r-approve")
    assert state.status == "failed" and state.approval_id is None
    step = state.step("cordon-again")
    assert step is not None and step.decision == "approval_required" and step.status == "failed"
    assert "rollback incomplete" in (state.error or "")
