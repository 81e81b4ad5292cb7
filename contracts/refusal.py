"""Why a tool call was refused: the typed half of an ``is_error`` tool result.

A tool the gate refuses answers ``CallToolResult(isError=True)`` with a sentence in its text content
(for a person, or a client that reads no structured content) and a ``Refusal`` as its
``structuredContent``. Clients — the runbook engine, the triage agent, chatops, the CLI — read
the fields, never the sentence. A failure that is not a refusal (a backend error, a bad argument)
carries no ``Refusal``.

Kinds:

- ``denied``: a policy forbids it, nothing permits it, or a person rejected its approval;
- ``approval_required``: a person must approve it first; ``approval_id`` names the request and
  ``expires_at`` when it lapses. The same call (same caller, tool, arguments, idempotency key)
  goes ahead once approved;
- ``breaker_open``: the circuit breaker stopped it (too many nodes taken out within its window);
  a person must reset the breaker;
- ``in_flight``: an earlier call with the same idempotency key is still running; retry a little
  later and its outcome answers;
- ``read_only``: the server runs in read-only mode and refuses every mutation.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

RefusalKind = Literal["denied", "approval_required", "breaker_open", "in_flight", "read_only"]


class Refusal(BaseModel):
    kind: RefusalKind
    rule: str | None = Field(default=None, description="the @id of the policy that decided, if one did")
    reasons: list[str] = Field(default_factory=list, description="why, as a person reads it")
    approval_id: str | None = Field(default=None, description="the approval request to decide")
    expires_at: datetime | None = Field(default=None, description="when that approval request lapses")

    @property
    def waits_for_a_person(self) -> bool:
        """Whether a person's decision (an approval, a breaker reset) could let the call through."""
        return self.kind in ("approval_required", "breaker_open")

    def structured(self) -> dict[str, Any]:
        """The ``structuredContent`` of the refusing tool result."""
        return self.model_dump(mode="json")


def refusal_of(is_error: bool, structured: Any) -> Refusal | None:
    """The refusal an error result's ``structuredContent`` holds; None for a success, or a failure
    that is no refusal."""
    if not is_error or not isinstance(structured, dict) or "kind" not in structured:
        return None
    try:
        return Refusal.model_validate(structured)
    except ValidationError:
        return None
