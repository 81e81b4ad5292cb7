"""A refused command's reply is built from the refusal's fields: its kind, and the approval to
decide when a person must approve (a failure that is no refusal says it failed)."""

from __future__ import annotations

from typing import Any

from chatops.commands import SlashRunner
from contracts.client import ToolResult, ToolSpec
from contracts.refusal import Refusal

SENTENCE = "Error executing tool isolate_gpu: policy requires approval for isolate_gpu on node-003/gpu3"


class Answers:
    """A tool client that answers every call with one result."""

    def __init__(self, result: ToolResult) -> None:
        self.result = result

    async def call(self, tool: str, arguments: dict[str, Any]) -> ToolResult:
        return self.result

    async def read_only_tools(self) -> set[str]:
        return set()

    async def tool_names(self) -> set[str]:
        return {"isolate_gpu"}

    async def tool_specs(self) -> list[ToolSpec]:
        return [ToolSpec(name="isolate_gpu")]


async def test_an_approval_refusal_names_the_approval_to_decide() -> None:
    asks = Refusal(kind="approval_required", rule="agent-needs-approval", approval_id="apr-0a1b2c3d4e")
    reply = await SlashRunner(Answers(ToolResult.refused(asks, SENTENCE)), caller="olga").run_text(
        "isolate node-003 3"
    )
    assert reply.text.startswith("isolate_gpu refused: policy requires approval")
    assert "`/gpu approve apr-0a1b2c3d4e`" in str(reply.blocks)


async def test_a_denial_names_its_rule() -> None:
    denied = Refusal(kind="denied", rule="blast-radius-max-isolations-per-hour")
    reply = await SlashRunner(
        Answers(ToolResult.refused(denied, "policy denied ...")), caller="olga"
    ).run_text("isolate node-003 3")
    assert reply.text == "isolate_gpu refused: policy denied ..."
    assert "policy blast-radius-max-isolations-per-hour" in str(reply.blocks)


async def test_a_failure_that_is_no_refusal_says_it_failed() -> None:
    broken = ToolResult(ok=False, text="Error executing tool isolate_gpu: the backend is unreachable")
    reply = await SlashRunner(Answers(broken), caller="olga").run_text("isolate node-003 3")
    assert reply.text == "isolate_gpu failed: the backend is unreachable"
