"""Executes a runbook step by step through MCP tool calls, persisting each step before and after.

Order: preconditions (read-only; a failed check stops the run before anything changes), steps,
verification (a failed check rolls back the steps that ran), rollback. A mutating step carries the
idempotency key ``<run id>/<step id>``, so resuming a run after a crash — even one that died while
a mutation was in flight — cannot act twice: the server answers a repeated key with the first
result. In a dry run, mutating steps are sent with ``dry_run=true``: the policy gate is consulted,
nothing changes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from events.models import utcnow
from mcp_server.guard import APPROVAL_REQUIRED, DENIED
from runbooks.client import ToolClient, ToolResult
from runbooks.library import RunbookLibrary
from runbooks.models import Check, Runbook, ToolStep
from runbooks.state import Phase, RunState, RunStore, StepState
from runbooks.templating import TemplateError, lookup, render

log = logging.getLogger(__name__)


class RunbookParamError(ValueError):
    pass


def check_params(runbook: Runbook, params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, spec in runbook.params.items():
        if name in params and params[name] is not None:
            value = params[name]
        elif spec.required and spec.default is None:
            raise RunbookParamError(f"runbook {runbook.name} needs parameter {name!r}")
        else:
            value = spec.default
        if value is not None:
            try:
                value = {"string": str, "integer": int, "boolean": bool}[spec.type](value)
            except (TypeError, ValueError) as exc:
                raise RunbookParamError(f"parameter {name!r} must be {spec.type}, got {value!r}") from exc
        out[name] = value
    unknown = set(params) - set(runbook.params)
    if unknown:
        raise RunbookParamError(f"runbook {runbook.name} has no parameters {sorted(unknown)}")
    return out


def evaluate(check: Check, result: Any, context: dict[str, Any] | None = None) -> str | None:
    """None when the check holds, else why it failed. The path may hold templates."""
    path = str(render(check.path, context)) if context else check.path
    try:
        value = lookup(result, path)
    except TemplateError:
        value = None
    ok = True
    if check.equals is not None:
        ok = value == check.equals
    elif check.not_equals is not None:
        ok = value != check.not_equals
    elif check.in_ is not None:
        ok = value in check.in_
    elif check.not_in is not None:
        ok = value not in check.not_in
    elif check.is_null is not None:
        ok = (value is None) == check.is_null
    if ok:
        return None
    return check.message or f"{path or 'result'} is {value!r}"


class RunbookEngine:
    def __init__(self, tools: ToolClient, store: RunStore, library: RunbookLibrary) -> None:
        self.tools = tools
        self.store = store
        self.library = library

    async def run(
        self,
        runbook_name: str,
        params: dict[str, Any],
        *,
        run_id: str,
        context: dict[str, Any] | None = None,
        dry_run: bool = False,
    ) -> RunState:
        """Run (or resume) a runbook. A finished run is returned as it is: runs are repeat-safe."""
        runbook = self.library.get(runbook_name)
        state = await self.store.load(run_id)
        if state is not None and state.finished:
            return state
        if state is None:
            state = RunState(
                run_id=run_id,
                runbook=runbook.name,
                params=check_params(runbook, params),
                context=context or {},
                dry_run=dry_run,
                status="running",
            )
            await self.store.save(state)
        read_only = await self.tools.read_only_tools()

        if not await self._phase(state, runbook.preconditions, "precondition", read_only):
            return await self._finish(
                state, "precondition_failed" if state.status == "running" else state.status
            )
        if not await self._phase(state, runbook.steps, "step", read_only):
            if state.status == "running":
                await self._phase(state, runbook.rollback, "rollback", read_only)
                return await self._finish(state, "failed")
            return await self._finish(state, state.status)
        if state.dry_run:
            return await self._finish(state, "dry_run")
        if not await self._phase(state, runbook.verify, "verify", read_only):
            await self._phase(state, runbook.rollback, "rollback", read_only)
            return await self._finish(state, "rolled_back")
        return await self._finish(state, "succeeded")

    async def _finish(self, state: RunState, status: Any) -> RunState:
        state.status = status
        await self.store.save(state)
        return state

    async def _phase(self, state: RunState, steps: list[ToolStep], phase: Phase, read_only: set[str]) -> bool:
        for step in steps:
            if not await self._step(state, step, phase, read_only):
                return False
        return True

    async def _step(self, state: RunState, step: ToolStep, phase: Phase, read_only: set[str]) -> bool:
        record = state.step(step.id)
        if record is not None and record.status == "done":
            if step.save_as:
                state.saved[step.save_as] = record.result
            return True
        mutating = step.tool not in read_only
        if state.dry_run and phase == "verify":
            return True
        ctx = {
            "params": state.params,
            "saved": state.saved,
            "context": state.context,
            "run": {"id": state.run_id},
        }
        try:
            arguments = render(step.args, ctx)
        except TemplateError as exc:
            state.error = f"step {step.id}: {exc}"
            state.steps.append(
                StepState(id=step.id, phase=phase, tool=step.tool, status="failed", error=str(exc))
            )
            await self.store.save(state)
            return False
        if mutating:
            arguments["idempotency_key"] = f"{state.run_id}/{step.id}"
            if state.dry_run:
                arguments["dry_run"] = True
        if record is None:
            record = StepState(id=step.id, phase=phase, tool=step.tool)
            state.steps.append(record)
        record.status, record.arguments, record.mutating = "running", arguments, mutating
        record.idempotency_key = arguments.get("idempotency_key")
        record.started_at = utcnow()
        await self.store.save(state)  # before: a crash from here on resumes this step with the same key

        result = await self._call(step, arguments)
        record.finished_at = utcnow()
        record.result = result.structured if result.structured is not None else result.text
        if result.ok:
            record.decision = _decision_of(result.structured) if mutating else None
            failure = next(
                (why for c in step.require if (why := evaluate(c, result.structured, ctx)) is not None), None
            )
        else:
            failure = result.text
            if DENIED in result.text:
                record.decision, state.status = "deny", "denied"
            elif APPROVAL_REQUIRED in result.text:
                record.decision, state.status = "approval_required", "denied"
        if failure is None:
            record.status = "done"
            if step.save_as:
                state.saved[step.save_as] = record.result
        else:
            record.status, record.error = "failed", failure
            state.error = f"{phase} {step.id} ({step.tool}): {failure}"
        await self.store.save(state)  # after
        return failure is None

    async def _call(self, step: ToolStep, arguments: dict[str, Any]) -> ToolResult:
        try:
            async with asyncio.timeout(step.timeout_s):
                return await self.tools.call(step.tool, arguments)
        except TimeoutError:
            return ToolResult(ok=False, text=f"{step.tool} timed out after {step.timeout_s}s")


def _decision_of(structured: Any) -> Any:
    if isinstance(structured, dict):
        policy = structured.get("policy")
        if isinstance(policy, dict):
            return policy.get("decision")
    return None
