"""A refused call, as the gate raises it and as the server answers it.

The guard raises ``Refused`` (a ``ToolError`` carrying a ``contracts.refusal.Refusal``); the server
(``GpuOpsServer.call_tool``) answers it as ``CallToolResult(isError=True)`` with the sentence as
text content and the refusal as structured content, so a client reads the kind, the rule and the
approval id as fields.
"""

from __future__ import annotations

from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent

from contracts.refusal import Refusal, RefusalKind
from mcp_server.gate.policy import DEFAULT_DENY

BREAKER_POLICY = "breaker-open"
"""The Cedar ``@id`` of the policy that stops take-outs while the breaker is open."""
READ_ONLY_POLICY = "read-only-mode"
"""The rule a read-only server names for every mutation it refuses."""
ROLE_RULES = frozenset({"viewers-read-only", DEFAULT_DENY})
"""Rules that refuse the caller whatever the facts: no breaker reset or approval lets them through."""


class Refused(ToolError):
    """The gate refused the call; ``str()`` is the sentence a person reads."""

    def __init__(self, refusal: Refusal, text: str) -> None:
        super().__init__(text)
        self.refusal = refusal


def refusal_kind(decision: str, policies: list[str]) -> RefusalKind:
    """What kind of refusal a policy decision other than ``allow`` is."""
    if decision == "approval_required":
        return "approval_required"
    if READ_ONLY_POLICY in policies:
        return "read_only"
    if BREAKER_POLICY in policies and not ROLE_RULES.intersection(policies):
        return "breaker_open"
    return "denied"


def deciding_rule(kind: RefusalKind, policies: list[str]) -> str:
    """The rule to name: the one that makes the kind what it is, else the first that decided (the
    gate puts the rules on who may call what first); a denial always names one."""
    special = {"read_only": READ_ONLY_POLICY, "breaker_open": BREAKER_POLICY}.get(kind)
    if special is not None and special in policies:
        return special
    return policies[0] if policies else DEFAULT_DENY


def refusal_in(exc: BaseException) -> Refused | None:
    """The ``Refused`` an exception is or was raised from (the SDK wraps a tool's ``ToolError``)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, Refused):
            return seen
        seen = seen.__cause__
    return None


def refused_result(refusal: Refusal, text: str) -> CallToolResult:
    """The tool result of a refused call: the sentence for people, the refusal for programs."""
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=refusal.structured(),
        is_error=True,
    )
