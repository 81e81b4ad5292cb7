"""A person confirms a destructive action before it runs: MCP elicitation through ``Resolve``.

A destructive tool takes one more parameter, filled by a resolver before its body runs (the model
never sees or sets it)::

    async def _confirm_isolate(ctx: Context, node: str, gpu: int, reason: str, dry_run: bool) -> Answer:
        return await ask(ctx, "isolate_gpu", f"GPU {gpu} on {node}", reason, dry_run, resource)

    @server.tool(annotations=mutating(destructive=True))
    async def isolate_gpu(..., confirmation: Annotated[Confirmed, Resolve(_confirm_isolate)]) -> ...:
        await require_confirmation(confirmation, deps, "isolate_gpu", arguments)

Who is asked: a person (principal kind ``person``), on a server built with
``ServerDeps.confirm_destructive``, outside a dry run and outside a runbook the person already
confirmed, for an action the policy gate does not refuse them anyway. The agent is never asked (its actions answer to the policy gate and the approval rules).
A client that cannot show a form (no elicitation capability) gets a refusal, not a silent yes.
On protocol 2026-07-28 the question travels in an ``InputRequiredResult`` and the call is retried
with the answer; on older protocols as an ``elicitation/create`` request in the middle of the call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from mcp.server.mcpserver import (
    AcceptedElicitation,
    Context,
    Elicit,
    ElicitationResult,
)
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from events.models import AuditRecord
from mcp_server.deps import ServerDeps
from mcp_server.gate.policy import Principal, Resource
from mcp_server.gate.safety import policy_context
from mcp_server.surface import GpuOpsServer

NOT_CONFIRMED = "not confirmed"


class Confirmation(BaseModel):
    """The form a person sees."""

    confirm: bool = Field(title="Go ahead", description="tick to carry out the action")


class Unconfirmable(BaseModel):
    """The client cannot ask its user: the action is refused."""

    why: str


Confirmed = ElicitationResult[Confirmation]
Answer = Confirmation | Unconfirmable | Elicit[Confirmation]

# Set while a confirmed runbook runs its steps: the person said yes to the whole runbook.
_confirmed_runbook: ContextVar[str | None] = ContextVar("confirmed_runbook", default=None)


@contextlib.contextmanager
def confirmed_runbook(run_id: str) -> Iterator[None]:
    token = _confirmed_runbook.set(run_id)
    try:
        yield
    finally:
        _confirmed_runbook.reset(token)


def server_deps(ctx: Context[Any, Any]) -> ServerDeps | None:
    """The deps of the server a resolver runs in (None outside a gpu-aiops server)."""
    server = ctx.mcp_server
    return server.deps if isinstance(server, GpuOpsServer) else None


async def ask(
    ctx: Context[Any, Any],
    action: str,
    target: str,
    reason: str,
    dry_run: bool,
    resource: Resource | None = None,
) -> Answer:
    """The resolver body of every destructive tool: no question, a question, or a refusal.

    With ``resource``, the policy gate is consulted first: a person is not asked to confirm what
    the gate refuses them anyway (the tool then answers with the gate's reason)."""
    deps = server_deps(ctx)
    if deps is None or not deps.confirm_destructive or dry_run or _confirmed_runbook.get() is not None:
        return Confirmation(confirm=True)
    principal = deps.identity()
    if principal.kind != "person":
        return Confirmation(confirm=True)  # the agent and services answer to policy, never to a form
    if resource is not None and await _refused(deps, principal, action, resource):
        return Confirmation(confirm=True)
    capabilities = ctx.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    if elicitation is None or (elicitation.form is None and elicitation.url is not None):
        return Unconfirmable(
            why=f"{action} on {target} needs {principal.id}'s confirmation, and this MCP client cannot "
            "ask (it does not support elicitation); use a client that does, or ask an operator"
        )
    return Elicit(
        f"{principal.id}: {action} on {target}. Reason given: {reason}. This changes the cluster. Go ahead?",
        Confirmation,
    )


async def _refused(deps: ServerDeps, principal: Principal, action: str, resource: Resource) -> bool:
    """Would the gate deny this outright? (An unknown target also skips the question: the tool
    reports it.)"""
    try:
        context, _ = await policy_context(deps, action, resource, dry_run=False, incident_id=None)
        return deps.gate.check(principal, action, resource, context).decision == "deny"
    except Exception:  # the tool body meets the same failure and reports it properly
        return True


async def require_confirmation(
    outcome: ElicitationResult[Any], deps: ServerDeps, action: str, arguments: dict[str, Any]
) -> None:
    """Raise a tool error (and audit the refusal) unless the person confirmed."""
    why: str | None = None
    if isinstance(outcome, AcceptedElicitation):
        data = outcome.data
        if isinstance(data, Unconfirmable):
            why = data.why
        elif not (isinstance(data, Confirmation) and data.confirm):
            why = f"{action} was not confirmed (the box was left unticked)"
    else:
        verb = "declined" if outcome.action == "decline" else "cancelled"
        why = f"{action} was {verb} by the person asked to confirm it"
    if why is None:
        return
    principal = deps.identity()
    await deps.audit.record(
        AuditRecord(
            time=deps.clock(),
            cluster=deps.backend.cluster,
            principal=principal.id,
            role=principal.role,
            tool=action,
            arguments=arguments,
            decision="deny",
            reasons=[why],
            ok=False,
            result=f"{NOT_CONFIRMED}: {why}",
        )
    )
    raise ToolError(f"{NOT_CONFIRMED}: {why}")
