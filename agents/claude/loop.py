"""The investigation: a tool-use loop written by hand, so each tool call is checked before it runs.

One model call per step. Read-only tool calls run through the agent's MCP client; anything else is
refused and the model is told why. The loop ends with a validated ``TriageAnswer`` or with the
reason there is none: a refusal, a malformed or cut-off reply, a limit reached, an API error. It
never raises for those — the planner turns a missing answer into a rules decision — and it leaves
time-outs to its caller, which holds the wall-clock limit around the whole run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from anthropic import AsyncAnthropic, Omit, omit
from anthropic.types import (
    Message,
    MessageParam,
    TextBlock,
    TextBlockParam,
    ToolChoiceParam,
    ToolUnionParam,
    ToolUseBlock,
)
from pydantic import BaseModel, Field, ValidationError

from agents.claude.answer import TriageAnswer
from agents.claude.limits import Meter, Usage
from agents.claude.prompt import ANSWER_TOOL, DataFence
from agents.claude.toolbox import InvestigationTools, Toolbox

NUDGE = (
    f"Finish now: call {ANSWER_TOOL} with your diagnosis. If the evidence is not enough to act on, "
    'use disposition "escalate" and say what a person should check.'
)
StepKind = Literal["model", "read", "refused", "answer", "stopped"]


class Step(BaseModel):
    """One line of the investigation's transcript."""

    kind: StepKind
    detail: str


class Outcome(BaseModel):
    """How an investigation ended: an answer, or why there is none; and what it cost."""

    answer: TriageAnswer | None = None
    failure: str | None = None
    transcript: list[Step] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    steps: int = 0
    wall_s: float = 0.0

    @property
    def refusals(self) -> list[Step]:
        return [s for s in self.transcript if s.kind == "refused"]


@dataclass
class Investigation:
    client: AsyncAnthropic
    model: str
    system: str
    toolbox: Toolbox
    tools: InvestigationTools
    fence: DataFence
    meter: Meter
    transcript: list[Step] = field(default_factory=list)

    async def run(self, brief: str) -> Outcome:
        """Investigate from the incident ``brief`` (the first user message) to an outcome."""
        messages: list[dict[str, Any]] = [{"role": "user", "content": brief}]
        nudged = False
        while True:
            if (why := self.meter.before_call()) is not None:
                return self._fail(why)
            try:
                reply = await self._ask(messages, force_answer=nudged)
            except Exception as exc:  # any API or transport failure: the rules decide
                return self._fail(f"the Messages API call failed: {type(exc).__name__}: {exc}"[:500])
            if not isinstance(reply.content, list) or reply.usage is None:
                # The SDK builds a Message from any JSON object without checking it.
                return self._fail("malformed reply: not a Messages API message")
            over = self._charge(reply)
            said = " ".join(b.text for b in reply.content if isinstance(b, TextBlock)).strip()
            if said:
                self._log("model", said[:300])
            if reply.stop_reason == "refusal":
                return self._fail("the model refused to answer")
            if reply.stop_reason in ("max_tokens", "model_context_window_exceeded"):
                return self._fail(f"the reply was cut off ({reply.stop_reason})")
            calls = [b for b in reply.content if isinstance(b, ToolUseBlock)]
            answer = next((c for c in calls if c.name == ANSWER_TOOL), None)
            if answer is not None:
                return self._answer(answer)
            if over is not None:
                return self._fail(over)
            if not calls:
                if nudged or reply.stop_reason != "end_turn":
                    return self._fail(
                        f"the model stopped ({reply.stop_reason}) without calling {ANSWER_TOOL}"
                    )
                messages += [_assistant(reply), {"role": "user", "content": NUDGE}]
                nudged = True
                continue
            messages += [_assistant(reply), {"role": "user", "content": await self._run_calls(calls)}]

    def stop(self, why: str) -> Outcome:
        """End from outside (the caller's wall-clock limit): the outcome so far, with ``why``."""
        return self._fail(why)

    async def _ask(self, messages: list[dict[str, Any]], *, force_answer: bool) -> Message:
        system: list[TextBlockParam] = [
            # The system prompt is the same for every incident of a kind: cache it.
            {"type": "text", "text": self.system, "cache_control": {"type": "ephemeral"}}
        ]
        choice: ToolChoiceParam | Omit = {"type": "tool", "name": ANSWER_TOOL} if force_answer else omit
        return await self.client.messages.create(
            model=self.model,
            max_tokens=self.meter.output_budget(),
            system=system,
            tools=cast("list[ToolUnionParam]", self.toolbox.definitions()),
            tool_choice=choice,
            messages=cast("list[MessageParam]", messages),
            # A backstop only: the caller's wall-clock limit ends the investigation first.
            timeout=self.meter.remaining_s + 1.0,
        )

    def _charge(self, reply: Message) -> str | None:
        u = reply.usage
        return self.meter.charge(
            input_tokens=u.input_tokens,
            output_tokens=u.output_tokens,
            cache_read=u.cache_read_input_tokens or 0,
            cache_write=u.cache_creation_input_tokens or 0,
        )

    async def _run_calls(self, calls: list[ToolUseBlock]) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        for call in calls:
            args = call.input if isinstance(call.input, dict) else {}
            shown = f"{call.name}({_args(args)})"
            refusal = self.toolbox.check(call.name)
            if refusal is not None:
                self._log("refused", f"{shown}: {refusal.reason}")
                text, ok = refusal.reason, False
            else:
                try:
                    ok, text = await self.toolbox.run(
                        self.tools, call.name, args, self.fence, self.meter.limits.max_tool_output_chars
                    )
                except Exception as exc:  # a broken tool is the model's information, not a crash
                    ok, text = False, f"{call.name} failed: {type(exc).__name__}: {exc}"
                self._log("read", shown + ("" if ok else " (error)"))
            block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call.id, "content": text}
            if not ok:
                block["is_error"] = True
            results.append(block)
        return results

    def _answer(self, call: ToolUseBlock) -> Outcome:
        try:
            answer = TriageAnswer.model_validate(call.input)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
            return self._fail(f"malformed {ANSWER_TOOL}: {problems}"[:500])
        self._log("answer", f"{answer.disposition}: {answer.diagnosis[:200]}")
        return self._outcome(answer=answer)

    def _fail(self, why: str) -> Outcome:
        self._log("stopped", why)
        return self._outcome(failure=why)

    def _outcome(self, *, answer: TriageAnswer | None = None, failure: str | None = None) -> Outcome:
        return Outcome(
            answer=answer,
            failure=failure,
            transcript=list(self.transcript),
            usage=self.meter.usage.model_copy(),
            steps=self.meter.steps,
            wall_s=self.meter.elapsed_s,
        )

    def _log(self, kind: StepKind, detail: str) -> None:
        self.transcript.append(Step(kind=kind, detail=detail))


def _assistant(reply: Message) -> dict[str, Any]:
    """The model's turn as it goes back into the conversation (text and tool calls only)."""
    content: list[dict[str, Any]] = []
    for block in reply.content:
        if isinstance(block, TextBlock):
            content.append({"type": "text", "text": block.text})
        elif isinstance(block, ToolUseBlock):
            content.append({"type": "tool_use", "id": block.id, "name": block.name, "input": block.input})
    return {"role": "assistant", "content": content}


def _args(arguments: dict[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v, default=str)[:60]}" for k, v in arguments.items())[:300]
