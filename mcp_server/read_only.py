"""Read-only mode: a server that can look but never touch.

Two locks, so neither alone has to be right: the server hides every tool that could change
something (``GpuOpsServer.hide_mutating_tools``), and the policy gate refuses every mutation it is
asked about (``ReadOnlyGate``), for whatever path reaches it (a runbook step, a front door that
builds its own server over the same dependencies).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcp_server.gate.policy import CedarValue, PolicyDecision, PolicyGate, Principal, Resource
from mcp_server.gate.refused import READ_ONLY_POLICY

__all__ = ["READ_ONLY_POLICY", "ReadOnlyGate"]


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
            reasons=[
                f"the server runs in read-only mode: {action} is refused to everyone, "
                f"'{principal.id}' included; an operator turns read-only mode off (AIOPS_READ_ONLY)"
            ],
            policies=[READ_ONLY_POLICY],
        )
