"""The engine's waits, in-flight retries, approval parking, fallbacks and checks, against a
scripted tool client."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from contracts.client import ToolResult, ToolSpec
from contracts.refusal import Refusal
from runbooks.engine import RunbookEngine, evaluate
from runbooks.library import RunbookError, RunbookLibrary
from runbooks.models import Check, Runbook, ToolStep
from runbooks.state import MemoryRunStore

READ_ONLY = {"probe"}


class Tools:
    def __init__(self, answers: dict[str, list[ToolResult]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def read_only_tools(self) -> set[str]:
        return READ_ONLY

    async def tool_names(self) -> set[str]:
        return set(self.answers)

    async def tool_specs(self) -> list[ToolSpec]:
        return [ToolSpec(name=name, read_only=name in READ_ONLY) for name in self.answers]

    async def call(self, tool: str, arguments: dict[str, Any]) -> ToolResult:
        self.calls.append((tool, arguments))
        queue = self.answers[tool]
        return queue.pop(0) if len(queue) > 1 else queue[0]


def library(*books: Runbook) -> RunbookLibrary:
    return RunbookLibrary({b.name: b for b in books})


def done(**data: Any) -> ToolResult:
    return ToolResult(ok=True, structured={"changed": True, "policy": {"decision": "allow"}, "data": data})


WAITING = Runbook(
    name="wait-for-it",
    description="act, then wait until the probe says ready",
    steps=[ToolStep(id="act", tool="act")],
    verify=[
        ToolStep(
            id="ready",
            tool="probe",
            wait={"within_s": 5, "every_s": 0.01},  # type: ignore[arg-type]
            require=[Check(path="ready", equals=True, message="not ready: {{ result.state }}")],
        )
    ],
)


async def test_a_wait_polls_until_its_check_holds() -> None:
    not_yet = ToolResult(ok=True, structured={"ready": False, "state": "restarting"})
    tools = Tools(
        {"act": [done()], "probe": [not_yet, not_yet, ToolResult(ok=True, structured={"ready": True})]}
    )

    engine = RunbookEngine(tools, MemoryRunStore(), library(WAITING), inline_wait_s=60)
    state = await engine.run("wait-for-it", {}, run_id="w1")

    assert state.status == "succeeded"
    ready = state.step("ready")
    assert ready is not None and ready.attempts == 3


async def test_a_wait_not_over_parks_the_run_and_the_next_run_polls_on() -> None:
    not_yet = ToolResult(ok=True, structured={"ready": False, "state": "restarting"})
    tools = Tools(
        {"act": [done()], "probe": [not_yet, not_yet, ToolResult(ok=True, structured={"ready": True})]}
    )
    engine = RunbookEngine(tools, MemoryRunStore(), library(WAITING))  # parks at once

    first = await engine.run("wait-for-it", {}, run_id="w1b")
    second = await engine.run("wait-for-it", {}, run_id="w1b")
    third = await engine.run("wait-for-it", {}, run_id="w1b")

    assert (first.status, second.status, third.status) == ("waiting", "waiting", "succeeded")
    assert not first.finished
    assert "not ready: restarting" in (first.error or "")
    assert [c[0] for c in tools.calls] == ["act", "probe", "probe", "probe"]  # the mutation ran once
    ready = third.step("ready")
    assert ready is not None and ready.waiting_since == first.step("ready").waiting_since  # type: ignore[union-attr]


async def test_a_wait_that_runs_out_fails_the_verification_with_the_last_reading() -> None:
    book = WAITING.model_copy(deep=True)
    assert book.verify[0].wait is not None
    book.verify[0].wait.within_s = 0.05
    tools = Tools(
        {"act": [done()], "probe": [ToolResult(ok=True, structured={"ready": False, "state": "pending"})]}
    )

    state = await RunbookEngine(tools, MemoryRunStore(), library(book), inline_wait_s=60).run(
        "wait-for-it", {}, run_id="w2"
    )

    assert state.status == "rolled_back"
    assert "not ready: pending (still so after 0.05 s)" in (state.error or "")


def test_a_wait_needs_a_condition() -> None:
    with pytest.raises(ValidationError, match="`wait` repeats the step until its `require` checks hold"):
        ToolStep(id="x", tool="probe", wait={"within_s": 1})  # type: ignore[arg-type]


async def test_a_call_still_running_on_the_server_is_waited_for_not_failed() -> None:
    why = "an earlier call with idempotency key 'r/act' is still running"
    busy = ToolResult.refused(Refusal(kind="in_flight", reasons=[why]), f"Error: {why}")
    tools = Tools({"act": [busy, busy, done()], "probe": [ToolResult(ok=True, structured={"ready": True})]})

    state = await RunbookEngine(tools, MemoryRunStore(), library(WAITING), inline_wait_s=60).run(
        "wait-for-it", {}, run_id="w3"
    )

    assert state.status == "succeeded"
    assert [c[0] for c in tools.calls] == ["act", "act", "act", "probe"]
    assert {c[1]["idempotency_key"] for c in tools.calls if c[0] == "act"} == {"w3/act"}


async def test_a_step_that_needs_approval_parks_the_run_and_a_second_run_repeats_the_same_call() -> None:
    asks = ToolResult.refused(
        Refusal(kind="approval_required", reasons=["too costly"], approval_id="apr-0a1b2c3d4e"),
        "Error executing tool act: policy requires approval for act on x for a (role agent): "
        "too costly; approval apr-0a1b2c3d4e requested (expires ...)",
    )
    tools = Tools({"act": [asks, done()], "probe": [ToolResult(ok=True, structured={"ready": True})]})
    store = MemoryRunStore()
    engine = RunbookEngine(tools, store, library(WAITING), inline_wait_s=60)

    parked = await engine.run("wait-for-it", {}, run_id="w4")
    resumed = await engine.run("wait-for-it", {}, run_id="w4")

    assert (parked.status, parked.approval_id) == ("awaiting_approval", "apr-0a1b2c3d4e")
    assert not parked.finished
    assert resumed.status == "succeeded" and resumed.approval_id is None
    act_calls = [c[1] for c in tools.calls if c[0] == "act"]
    assert act_calls[0] == act_calls[1]  # the very same call, key included


async def test_in_a_dry_run_an_approval_is_reported_not_waited_for() -> None:
    asks = ToolResult.refused(
        Refusal(kind="approval_required", reasons=["too costly"], approval_id="apr-0a1b2c3d4e"),
        "policy requires approval for act on x: too costly",
    )
    tools = Tools({"act": [asks], "probe": [ToolResult(ok=True, structured={"ready": True})]})

    state = await RunbookEngine(tools, MemoryRunStore(), library(WAITING)).run(
        "wait-for-it", {}, run_id="w5", dry_run=True
    )

    assert state.status == "denied"
    step = state.step("act")
    assert step is not None and step.decision == "approval_required"


async def test_a_dry_run_skips_a_step_that_needs_an_earlier_mutations_result() -> None:
    book = Runbook(
        name="ticket-then-page",
        description="the page names the ticket",
        steps=[
            ToolStep(id="ticket", tool="open", save_as="ticket"),
            ToolStep(id="page", tool="page", args={"ticket": "{{ saved.ticket.data.ticket }}"}),
        ],
    )
    dry = ToolResult(ok=True, structured={"changed": False, "dry_run": True, "policy": {"decision": "allow"}})
    tools = Tools({"open": [dry], "page": [dry]})

    state = await RunbookEngine(tools, MemoryRunStore(), library(book)).run(
        "ticket-then-page", {}, run_id="w6", dry_run=True
    )

    assert state.status == "dry_run"
    page = state.step("page")
    assert page is not None and page.status == "skipped" and "not checked in a dry run" in (page.error or "")


def test_a_fallback_to_a_runbook_that_does_not_exist_is_refused_at_load(tmp_path: Any) -> None:
    (tmp_path / "a.yaml").write_text(
        "name: a\ndescription: d\nsteps: [{id: s, tool: t}]\nfallback: {runbook: nowhere}\n"
    )
    with pytest.raises(RunbookError, match="falls back to 'nowhere', which does not exist"):
        RunbookLibrary.load(tmp_path)


def test_contains_checks_look_into_lists_and_render_their_values() -> None:
    ctx = {"params": {"node": "node-010"}}
    gang = {"nodes": ["node-009", "node-015"]}

    assert evaluate(Check(path="nodes", not_contains="{{ params.node }}"), gang, ctx) is None
    assert evaluate(Check(path="nodes", contains="node-015"), gang, ctx) is None
    assert evaluate(Check(path="nodes", contains="{{ params.node }}"), gang, ctx) == (
        "nodes is ['node-009', 'node-015']"
    )
