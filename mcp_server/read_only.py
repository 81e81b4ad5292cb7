"""Read-only mode: a server that can look but never touch.

Two locks, so neither alone has to be right: the server hides every tool that could change
something (``GpuOpsServer.hide_mutating_tools``), and the policy gate refuses every mutation it is
asked about (``ReadOnlyGate``), for whatever path reaches it (a runbook step, a front door that
builds its own server over the same dependencies).

Every refused mutation attempt is audited in ``GPU_AUDIT``, whichever lock refused it: the gate's
denials through the guard as any denial, and a call to a hidden tool by ``audit_hidden_call``
(``GpuOpsServer.call_tool``), with the reason starting ``read_only:`` in both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from contracts.tools import PolicyView
from mcp_server.deps import ServerDeps
from mcp_server.gate.audit import audit
from mcp_server.gate.policy import CedarValue, PolicyDecision, PolicyGate, Principal, Resource
from mcp_server.gate.refused import READ_ONLY_POLICY

__all__ = ["READ_ONLY_POLICY", "ReadOnlyGate", "audit_hidden_call"]

READ_ONLY_REASON = "read_only"


def refusal(action: str, principal: Principal) -> str:
    return (
        f"{READ_ONLY_REASON}: the server runs in read-only mode: {action} is refused to everyone, "
        f"'{principal.id}' included; an operator turns read-only mode off (AIOPS_READ_ONLY)"
    )


async def audit_hidden_call(deps: ServerDeps, tool: str, arguments: dict[str, Any]) -> str:
    """Audit a call to a mutating tool that read-only mode hid; returns the refusal to answer."""
    principal = deps.identity()
    reason = refusal(tool, principal)
    view = PolicyView(decision="deny", reasons=[reason], policies=[READ_ONLY_POLICY])
    await audit(deps, principal, tool, dict(arguments), view, ok=False, result="refused (read_only)")
    return reason


class ReadOnlyGate(PolicyGate):
    """A policy gate that denies every action; it wraps the real gate for its schema checks."""

    def __init__(self, inner: PolicyGate) -> None:  # no super().__init__: everything delegates
        self._inner = inner
        self.actions = inner.actions
        self.policies = inner.policies

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def check(
        self,
        principal: Principal,
        action: str,
        resource: Resource,
        context: Mapping[str, CedarValue] | None = None,
    ) -> PolicyDecision:
        # Ask the real gate first: a malformed request fails the same way in both modes.
        self._inner.check(principal, action, resource, context)
        return PolicyDecision(
            decision="deny",
            reasons=[refusal(action, principal)],
            policies=[READ_ONLY_POLICY],
        )
