"""The audit trail: every call of a mutating tool, allowed or not, lands here.

A record is written through NATS faults: a leader election or a server restart makes the publish
fail or time out for a while, so ``JetStreamAudit.record`` retries transient errors with backoff
(up to about a minute) under one ``Nats-Msg-Id`` per record, which the stream's duplicate window
uses to keep a retried record whose first acknowledgement was lost only once.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any, Protocol

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from contracts.tools import PolicyView
from events import subjects
from events.backoff import Backoff, retry_transient
from events.models import AuditRecord
from mcp_server.gate.policy import Principal

if TYPE_CHECKING:  # deps imports AuditSink from here
    from mcp_server.deps import ServerDeps

log = logging.getLogger(__name__)


class AuditSink(Protocol):
    async def record(self, entry: AuditRecord) -> None: ...

    async def read(self) -> list[AuditRecord]:
        """Every record kept, oldest first (the ``audit_log`` tool filters them)."""
        ...


READ_BATCH = 500
RECORD_ATTEMPTS = 40  # backoff capped at 2 s: about a minute of NATS fault ridden out


class JetStreamAudit:
    """Appends to the ``GPU_AUDIT`` stream (append-only: no delete, no purge)."""

    def __init__(self, js: JetStreamContext, *, attempts: int = RECORD_ATTEMPTS) -> None:
        self._js = js
        self._attempts = attempts

    async def record(self, entry: AuditRecord) -> None:
        subject = subjects.audit(entry.cluster)
        payload = entry.model_dump_json().encode()
        headers = {"Nats-Msg-Id": f"audit-{uuid.uuid4().hex}"}
        await retry_transient(
            lambda: self._js.publish(subject, payload, headers=headers),
            attempts=self._attempts,
            backoff=Backoff(0.1, 2.0),
        )

    async def read(self) -> list[AuditRecord]:
        info = await self._js.stream_info(subjects.STREAM_AUDIT)
        if not info.state.messages:
            return []
        sub = await self._js.pull_subscribe(
            "gpu.audit.>", durable=None, config=ConsumerConfig(ack_policy=AckPolicy.NONE)
        )
        records: list[AuditRecord] = []
        try:
            remaining = (await sub.consumer_info()).num_pending or 0
            while remaining > 0:
                batch = await sub.fetch(min(remaining, READ_BATCH), timeout=5)
                records += [AuditRecord.model_validate_json(m.data) for m in batch]
                remaining -= len(batch)
        finally:
            await sub.unsubscribe()
        return records


class MemoryAudit:
    """For a standalone MCP server with no NATS (``aiops mcp`` on its own) and for tests."""

    def __init__(self) -> None:
        self.entries: list[AuditRecord] = []

    async def record(self, entry: AuditRecord) -> None:
        self.entries.append(entry)

    async def read(self) -> list[AuditRecord]:
        return list(self.entries)


async def audit(
    deps: ServerDeps,
    principal: Principal,
    action: str,
    arguments: dict[str, Any],
    policy: PolicyView,
    *,
    ok: bool,
    result: str,
    dry_run: bool = False,
    idempotency_key: str | None = None,
    replayed: bool = False,
) -> None:
    """Write one audit record; a lost record is logged loudly, never raised (the action happened)."""
    entry = AuditRecord(
        time=deps.clock(),
        cluster=deps.backend.cluster,
        principal=principal.id,
        role=principal.role,
        tool=action,
        arguments=arguments,
        decision=policy.decision,
        reasons=policy.reasons,
        policies=policy.policies,
        dry_run=dry_run,
        idempotency_key=idempotency_key,
        replayed=replayed,
        ok=ok,
        result=result,
    )
    try:
        await deps.audit.record(entry)
    except Exception:
        log.exception("could not write audit record for %s by %s", action, principal.id)
