"""Executes a runbook step by step through MCP tool calls, persisting each step before and after.

Order: preconditions (read-only; a failed check stops the run before anything changes), steps,
verification (a failed check rolls back the steps that ran), rollback. A mutating step carries the
idempotency key ``<run id>/<step id>``, so resuming a run after a crash — even one that died while
a mutation was in flight — cannot act twice: the server answers a repeated key with the first
result (and asks the caller to retry while the first call is still running). In a dry run,
mutating steps are sent with ``dry_run=true``: the policy gate is consulted, nothing changes.

Approvals: when the policy sends a mutating step to a person, the run parks in
``awaiting_approval`` with the approval id; ``run`` again (after the approval) repeats that same
call, which the server now lets through; ``abandon`` ends a parked run (rejected, expired).

A runbook's ``confirm`` checks (a job training again at its baseline step time) need time to hold
but do not hold the run: it ends ``succeeded`` with ``confirm_status = "pending"``, and ``confirm``
runs them later, as often as needed, until they hold or their ``within_s`` runs out.

Every step has a timeout; a step with ``wait`` repeats its read until its checks hold or its
``within_s`` runs out (a reset, a reboot, a job's restart take minutes). A wait that is not over
after ``inline_wait_s`` parks the run in ``waiting`` and returns, so the caller is not held for
minutes (and a simulation that moves its clock between calls is not stuck): ``run`` again polls
on, counting ``within_s`` from when the wait began.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from contracts.client import ToolClient, ToolResult
from events.models import utcnow
from runbooks.library import RunbookLibrary
from runbooks.models import Check, Runbook, ToolStep
from runbooks.state import Phase, RunState, RunStore, StepState
from runbooks.templating import TemplateError, lookup, render

log = logging.getLogger(__name__)

IN_FLIGHT_RETRY_S = 0.2


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
                value = _CASTS[spec.type](value)
            except (TypeError, ValueError) as exc:
                raise RunbookParamError(f"parameter {name!r} must be {spec.type}, got {value!r}") from exc
        out[name] = value
    unknown = set(params) - set(runbook.params)
    if unknown:
        raise RunbookParamError(f"runbook {runbook.name} has no parameters {sorted(unknown)}")
    return out


def _as_list(value: Any) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise TypeError(f"{value!r} is not a list")
    return list(value)


_CASTS: dict[str, Callable[[Any], Any]] = {"string": str, "integer": int, "boolean": bool, "list": _as_list}


def evaluate(check: Check, result: Any, context: dict[str, Any] | None = None) -> str | None:
    """None when the check holds, else why it failed. Path, values and message may hold templates."""

    def rendered(value: Any) -> Any:
        try:
            return render(value, context) if context else value
        except TemplateError:
            return value

    path = str(rendered(check.path))
    try:
        value = lookup(result, path)
    except TemplateError:
        value = None
    ok = True
    if check.equals is not None:
        ok = value == rendered(check.equals)
    elif check.not_equals is not None:
        ok = value != rendered(check.not_equals)
    elif check.in_ is not None:
        ok = value in rendered(check.in_)
    elif check.not_in is not None:
        ok = value not in rendered(check.not_in)
    elif check.is_null is not None:
        ok = (value is None) == check.is_null
    elif check.contains is not None:
        ok = isinstance(value, list | str) and rendered(check.contains) in value
    elif check.not_contains is not None:
        ok = not (isinstance(value, list | str) and rendered(check.not_contains) in value)
    if ok:
        return None
    return str(rendered(check.message)) if check.message else f"{path or 'result'} is {value!r}"


class RunbookEngine:
    def __init__(
        self,
        tools: ToolClient,
        store: RunStore,
        library: RunbookLibrary,
        *,
        inline_wait_s: float = 0.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """``clock`` stamps the run's records (the backend's clock: the twin's on the embedded
        platform, so a run's times line up with its incident's); waits are timed on the wall clock."""
        self.tools = tools
        self.store = store
        self.library = library
        self.inline_wait_s = inline_wait_s
        self.clock = clock
        self._takes_incident: set[str] | None = None

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
                created_at=self.clock(),
            )
            await self.store.save(state)
        elif state.status == "awaiting_approval":
            state.status, state.approval_id = "running", None  # the parked step is called again
        elif state.status == "waiting":
            state.status = "running"  # the waiting step polls on
        read_only = await self.tools.read_only_tools()

        if not await self._phase(state, runbook.preconditions, "precondition", read_only):
            if state.status == "waiting":
                return state
            return await self._finish(
                state, "precondition_failed" if state.status == "running" else state.status
            )
        if not await self._phase(state, runbook.steps, "step", read_only):
            if state.status in ("awaiting_approval", "waiting"):
                await self.store.save(state)
                return state
            if state.status == "running":
                await self._roll_back(state, runbook.rollback, read_only)
                return await self._finish(state, "failed")
            return await self._finish(state, state.status)
        if state.dry_run:
            return await self._finish(state, "dry_run")
        if not await self._phase(state, runbook.verify, "verify", read_only):
            if state.status == "waiting":
                return state
            if not await self._roll_back(state, runbook.rollback, read_only):
                return await self._finish(state, "failed")
            return await self._finish(state, "rolled_back")
        if runbook.confirm:
            state.confirm_status = "pending"
        return await self._finish(state, "succeeded")

    async def confirm(self, run_id: str) -> RunState | None:
        """Run (or go on with) a succeeded run's ``confirm`` checks: ``confirm_status`` ends
        ``confirmed`` or ``failed``, or stays ``pending`` while a wait is not over."""
        state = await self.store.load(run_id)
        if state is None or state.confirm_status != "pending":
            return state
        runbook = self.library.get(state.runbook)
        read_only = await self.tools.read_only_tools()
        for step in runbook.confirm:
            if not await self._step(state, step, "confirm", read_only):
                record = state.step(step.id)
                if record is not None and record.status == "waiting":
                    return state
                state.confirm_status, state.confirm_error = "failed", record.error if record else state.error
                await self.store.save(state)
                return state
        state.confirm_status = "confirmed"
        await self.store.save(state)
        return state

    async def abandon(self, run_id: str, why: str) -> RunState | None:
        """End a run that waits (an approval was rejected or expired): nothing more of it runs."""
        state = await self.store.load(run_id)
        if state is None or state.finished:
            return state
        for step in state.steps:
            if step.status in ("awaiting_approval", "waiting", "running"):
                step.status, step.error, step.finished_at = "failed", why, self.clock()
        state.error, state.approval_id = why, None
        return await self._finish(state, "abandoned")

    def fallback_for(self, state: RunState) -> tuple[str, dict[str, Any]] | None:
        """The runbook (and its parameters) to run after ``state`` failed or did not verify."""
        runbook = self.library.get(state.runbook)
        if runbook.fallback is None or state.status not in ("failed", "rolled_back"):
            return None
        params = render(runbook.fallback.params, _template_context(state))
        return runbook.fallback.runbook, params

    async def _finish(self, state: RunState, status: Any) -> RunState:
        state.status = status
        await self.store.save(state)
        return state

    async def _roll_back(self, state: RunState, steps: list[ToolStep], read_only: set[str]) -> bool:
        """Run the rollback steps; False (and the error says so) when one failed, was denied or
        needed an approval — a rollback never waits, and a run is ``rolled_back`` only when every
        rollback step ran."""
        why = state.error
        if await self._phase(state, steps, "rollback", read_only):
            return True
        state.error = f"{why}; rollback incomplete: {state.error}"
        return False

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
        ctx = _template_context(state)
        try:
            arguments = render(step.args, ctx)
        except TemplateError as exc:
            if state.dry_run and mutating:
                # It needs what an earlier mutation returns, which a dry run does not produce.
                why = f"not checked in a dry run: it needs the result of an earlier step ({exc})"
                state.steps.append(
                    StepState(id=step.id, phase=phase, tool=step.tool, status="skipped", error=why)
                )
                await self.store.save(state)
                return True
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
            incident = state.context.get("incident")
            if isinstance(incident, dict) and incident.get("id") and await self._takes_incident_id(step.tool):
                arguments.setdefault("incident_id", incident["id"])
        if record is None:
            record = StepState(id=step.id, phase=phase, tool=step.tool)
            state.steps.append(record)
        record.status, record.arguments, record.mutating = "running", arguments, mutating
        record.idempotency_key = arguments.get("idempotency_key")
        record.approval_id, record.error = None, None
        record.started_at = self.clock()
        await self.store.save(state)  # before: a crash from here on resumes this step with the same key

        result, failure, parked = await self._call_until_done(
            step, arguments, record, ctx, phase != "rollback"
        )
        if parked:
            record.status, record.error = "waiting", failure
            if phase != "confirm":  # a confirmation waits beside a finished run
                state.status = "waiting"
                state.error = f"{phase} {step.id} ({step.tool}) waits: {failure}"
            await self.store.save(state)
            return False
        record.finished_at = self.clock()
        record.result = result.structured if result.structured is not None else result.text
        refusal = result.refusal
        if result.ok:
            record.decision = _decision_of(result.structured) if mutating else None
        elif refusal is not None and refusal.kind != "approval_required":
            record.decision, state.status, state.refusal = "deny", "denied", refusal
        elif refusal is not None:
            record.decision = "approval_required"
            if state.dry_run or phase != "step":
                state.status, state.refusal = "denied", refusal  # nothing waits in a dry run or a rollback
            else:
                record.status, record.approval_id, record.error = (
                    "awaiting_approval",
                    refusal.approval_id,
                    failure,
                )
                state.status, state.approval_id = "awaiting_approval", record.approval_id
                state.error = f"{phase} {step.id} ({step.tool}) waits for approval {record.approval_id}"
                await self.store.save(state)
                return False
        if failure is None:
            record.status = "done"
            if step.save_as:
                state.saved[step.save_as] = record.result
        else:
            record.status, record.error = "failed", failure
            if phase != "confirm":
                state.error = f"{phase} {step.id} ({step.tool}): {failure}"
        await self.store.save(state)  # after
        return failure is None

    async def _call_until_done(
        self,
        step: ToolStep,
        arguments: dict[str, Any],
        record: StepState,
        ctx: dict[str, Any],
        can_park: bool,
    ) -> tuple[ToolResult, str | None, bool]:
        """Call the tool; a step with ``wait`` calls again until its checks hold, its ``within_s``
        runs out, or (when it may) it parks after ``inline_wait_s``. Returns the last result, why
        the step failed (None when it holds), and whether it parked."""
        if step.wait is not None and record.waiting_since is None:
            record.waiting_since = utcnow()
        inline_until = time.monotonic() + self.inline_wait_s
        while True:
            record.attempts += 1
            result = await self._call(step, arguments)
            if not result.ok:
                return result, result.text, False
            seen = {**ctx, "result": result.structured}  # a check's message may quote the result
            failure = next(
                (why for c in step.require if (why := evaluate(c, result.structured, seen)) is not None), None
            )
            if failure is None or step.wait is None or record.waiting_since is None:
                return result, failure, False
            if (utcnow() - record.waiting_since).total_seconds() >= step.wait.within_s:
                return result, f"{failure} (still so after {step.wait.within_s:g} s)", False
            if can_park and time.monotonic() >= inline_until:
                return result, failure, True
            await asyncio.sleep(step.wait.every_s)

    async def _call(self, step: ToolStep, arguments: dict[str, Any]) -> ToolResult:
        try:
            async with asyncio.timeout(step.timeout_s):
                while True:
                    result = await self.tools.call(step.tool, arguments)
                    # The same call is still running on the server (a resumed run whose first
                    # attempt died mid-call): its outcome will answer us; wait for it.
                    if result.refusal is None or result.refusal.kind != "in_flight":
                        return result
                    await asyncio.sleep(IN_FLIGHT_RETRY_S)
        except TimeoutError:
            return ToolResult(ok=False, text=f"{step.tool} timed out after {step.timeout_s}s")

    async def _takes_incident_id(self, tool: str) -> bool:
        """Whether the tool accepts ``incident_id`` (the server links approvals and audit to it)."""
        if self._takes_incident is None:
            specs = await self.tools.tool_specs()
            self._takes_incident = {
                s.name for s in specs if "incident_id" in s.input_schema.get("properties", {})
            }
        return tool in self._takes_incident


def _template_context(state: RunState) -> dict[str, Any]:
    return {
        "params": state.params,
        "saved": state.saved,
        "context": state.context,
        "run": {"id": state.run_id},
    }


def _decision_of(structured: Any) -> Any:
    if isinstance(structured, dict):
        policy = structured.get("policy")
        if isinstance(policy, dict):
            return policy.get("decision")
    return None
