"""Approval requests: a mutation the policy gate answered ``approval_required`` waits here for a
person.

The guard writes the request (who asked, the tool, its exact arguments and idempotency key, the
policy's reasons, the fleet facts behind them, the incident, an expiry); a person approves or
rejects it by id (``approve_action`` / ``reject_action``, ``aiops approve|reject``); the caller's
retry of the *same* call (same principal, tool, arguments, key) then passes the gate with
``context.approved = true``, and the approval is used up. Nobody can set ``approved`` in a call.

Records live in the JetStream KV bucket ``approvals`` (key ``a.<id>``), written compare-and-set, so
the agent can watch the bucket and resume or abandon the run a decision concerns.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from pydantic import BaseModel, Field

from events import subjects
from events.documents import DocumentConflict, DocumentMissing, Documents, KvDocuments, MemoryDocuments
from events.models import utcnow

ApprovalStatus = Literal["pending", "approved", "rejected", "expired", "used"]
DECIDED: frozenset[str] = frozenset({"approved", "rejected", "expired", "used"})


class ApprovalError(Exception):
    """No such approval, or it cannot take this decision (already decided, expired)."""


class ApprovalRequest(BaseModel):
    id: str
    cluster: str
    status: ApprovalStatus = "pending"
    action: str = Field(description="the tool waiting for approval")
    target: str
    requested_by: str = Field(description="the principal whose call waits")
    requester_role: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    fingerprint: str = Field(description="what binds the approval to these exact arguments")
    idempotency_key: str | None = None
    incident_id: str | None = None
    reasons: list[str] = Field(default_factory=list, description="why the policy asks a person")
    policies: list[str] = Field(default_factory=list)
    evidence: dict[str, Any] = Field(default_factory=dict, description="the fleet facts the policy weighed")
    requested_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    comment: str = ""
    used_at: datetime | None = None

    def expired(self, now: datetime) -> bool:
        return self.status == "pending" and now >= self.expires_at

    def current_status(self, now: datetime) -> ApprovalStatus:
        return "expired" if self.expired(now) else self.status

    def summary(self) -> str:
        why = self.reasons[0] if self.reasons else "the policy asks a person"
        return f"{self.action} on {self.target} for {self.requested_by}: {why}"

    def matches(self, principal: str, action: str, fingerprint: str, idempotency_key: str | None) -> bool:
        return (
            self.requested_by == principal
            and self.action == action
            and self.fingerprint == fingerprint
            and self.idempotency_key == idempotency_key
        )


def new_request(*, ttl_s: float, now: datetime | None = None, **fields: Any) -> ApprovalRequest:
    at = now or utcnow()
    return ApprovalRequest(
        id=f"apr-{secrets.token_hex(5)}", requested_at=at, expires_at=at + timedelta(seconds=ttl_s), **fields
    )


class ApprovalBook(Protocol):
    async def get(self, approval_id: str) -> ApprovalRequest | None: ...

    async def list(self, statuses: Iterable[ApprovalStatus] | None = None) -> list[ApprovalRequest]:
        """Newest first; ``statuses`` as stored (a pending request past its expiry is still pending
        until someone marks it: see ``current_status``)."""
        ...

    async def add(self, request: ApprovalRequest) -> None: ...

    async def update(self, approval_id: str, change: Callable[[ApprovalRequest], None]) -> ApprovalRequest:
        """Apply ``change`` and write it back unless someone wrote in between (then retry)."""
        ...


async def find(
    book: ApprovalBook, principal: str, action: str, fingerprint: str, idempotency_key: str | None
) -> ApprovalRequest | None:
    """The newest request for exactly this call, if any."""
    return next(
        (r for r in await book.list() if r.matches(principal, action, fingerprint, idempotency_key)), None
    )


async def expire_due(book: ApprovalBook, now: datetime | None = None) -> list[ApprovalRequest]:
    """Mark pending requests past their expiry as expired; returns the ones this call marked."""
    at = now or utcnow()
    marked = []
    for request in await book.list(["pending"]):
        if request.expired(at):

            def expire(r: ApprovalRequest) -> None:
                if r.expired(at):
                    r.status, r.decided_at = "expired", at

            updated = await book.update(request.id, expire)
            if updated.status == "expired" and updated.decided_at == at:
                marked.append(updated)
    return marked


def _key(approval_id: str) -> str:
    return f"a.{subjects.token(approval_id)}"


class DocumentApprovals:
    """Approval requests as typed documents (``events.documents``), written compare-and-set."""

    def __init__(self, docs: Documents[ApprovalRequest]) -> None:
        self.docs = docs

    async def get(self, approval_id: str) -> ApprovalRequest | None:
        return await self.docs.get(_key(approval_id))

    async def list(self, statuses: Iterable[ApprovalStatus] | None = None) -> list[ApprovalRequest]:
        wanted = set(statuses) if statuses is not None else None
        return sorted(
            (r for r in await self.docs.values() if wanted is None or r.status in wanted),
            key=lambda r: r.requested_at,
            reverse=True,
        )

    async def add(self, request: ApprovalRequest) -> None:
        await self.docs.create(_key(request.id), request)

    async def update(self, approval_id: str, change: Callable[[ApprovalRequest], None]) -> ApprovalRequest:
        try:
            return await self.docs.update(_key(approval_id), change)
        except DocumentMissing:
            raise ApprovalError(f"no approval {approval_id!r}") from None
        except DocumentConflict:
            raise ApprovalError(f"approval {approval_id} kept changing under us; retry") from None


class KvApprovals(DocumentApprovals):
    """Approval requests in the JetStream KV bucket ``approvals``."""

    def __init__(self, kv: KeyValue) -> None:
        super().__init__(KvDocuments(kv, ApprovalRequest))

    @classmethod
    async def open(cls, js: JetStreamContext) -> KvApprovals:
        return cls(await js.key_value(subjects.BUCKET_APPROVALS))


class MemoryApprovals(DocumentApprovals):
    """For a server without NATS (standalone ``aiops mcp``) and for tests."""

    def __init__(self) -> None:
        super().__init__(MemoryDocuments(ApprovalRequest))
