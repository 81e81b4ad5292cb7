"""The audit trail: every call of a mutating tool, allowed or not, lands here."""

from __future__ import annotations

from typing import Protocol

from nats.js import JetStreamContext

from events import subjects
from events.models import AuditRecord


class AuditSink(Protocol):
    async def record(self, entry: AuditRecord) -> None: ...


class JetStreamAudit:
    """Appends to the ``GPU_AUDIT`` stream (append-only: no delete, no purge)."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js

    async def record(self, entry: AuditRecord) -> None:
        await self._js.publish(subjects.audit(entry.cluster), entry.model_dump_json().encode())


class MemoryAudit:
    """For a standalone MCP server with no NATS (``aiops mcp`` on its own) and for tests."""

    def __init__(self) -> None:
        self.entries: list[AuditRecord] = []

    async def record(self, entry: AuditRecord) -> None:
        self.entries.append(entry)
