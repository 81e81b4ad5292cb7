"""Progress notifications for the long tools, when the caller sent a progress token.

A mutation reports three steps — the policy check, carrying it out, the outcome — and a runbook
reports each step it finishes (k of n) and says so when it parks for an approval. Without a token
(or in process, from a runbook step) every report is a no-op; a report that cannot be delivered
never fails the call.
"""

from __future__ import annotations

import contextlib
from typing import Any

from mcp.server.mcpserver import Context

from contracts.tools import ActionChange, ActionOutcome
from mcp_server.gate.guard import MutationGuard, Perform
from runbooks.state import RunState, RunStore

MUTATION_STEPS = 3


async def report(ctx: Context, done: float, total: float, message: str) -> None:
    """One progress notification; nothing when the caller asked for none."""
    with contextlib.suppress(Exception):
        await ctx.report_progress(done, total, message)


async def run_with_progress(
    ctx: Context, guard: MutationGuard, *, perform: Perform, **call: Any
) -> ActionOutcome:
    """``guard.run(**call, perform=perform)`` with progress: policy → carrying out → outcome."""
    label = f"{call['action']} {call['target']}"
    await report(ctx, 0, MUTATION_STEPS, f"checking policy for {label}")

    async def performing() -> ActionChange:
        await report(ctx, 1, MUTATION_STEPS, f"policy allowed {label}; carrying it out")
        change = await perform()
        await report(ctx, 2, MUTATION_STEPS, f"{label}: {change.detail}")
        return change

    outcome = await guard.run(**call, perform=performing)
    verdict = "dry run" if outcome.dry_run else ("changed" if outcome.changed else "nothing changed")
    await report(ctx, MUTATION_STEPS, MUTATION_STEPS, f"{label}: {verdict} ({outcome.policy.decision})")
    return outcome


def run_message(state: RunState) -> str:
    """Where a run stands, for a person watching it."""
    if state.approval_id:
        return f"runbook {state.runbook} parked: waiting for approval {state.approval_id}"
    last = next((s for s in reversed(state.steps) if s.status != "pending"), None)
    if last is None:
        return f"runbook {state.runbook} {state.status}"
    return f"runbook {state.runbook}: step {last.id} ({last.tool}) {last.status}"


class ProgressRuns:
    """A ``RunStore`` that reports each save of a run as progress (steps finished of all steps)."""

    def __init__(self, inner: RunStore, ctx: Context) -> None:
        self._inner = inner
        self._ctx = ctx
        self.reported: list[str] = []

    async def load(self, run_id: str) -> RunState | None:
        return await self._inner.load(run_id)

    async def save(self, state: RunState) -> None:
        await self._inner.save(state)
        finished = sum(1 for s in state.steps if s.status not in ("pending", "running"))
        message = run_message(state)
        if not self.reported or self.reported[-1] != message:
            self.reported.append(message)
            await report(self._ctx, finished, max(len(state.steps), 1), message)
