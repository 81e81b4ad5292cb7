"""Where the incident tools read incidents from (the agents' KV store in a deployment)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from events.incident import Incident, IncidentStatus


class IncidentSource(Protocol):
    async def list_incidents(
        self, statuses: Iterable[IncidentStatus] | None = None, limit: int = 50
    ) -> list[Incident]: ...

    async def get_incident(self, incident_id: str) -> Incident | None: ...

    async def update(self, incident_id: str, change: Callable[[Incident], None]) -> Incident:
        """Apply ``change`` to the stored incident and write it back (compare-and-set)."""
        ...


class NoIncidents:
    """For an MCP server running without the agents (standalone ``aiops mcp``)."""

    async def list_incidents(
        self, statuses: Iterable[IncidentStatus] | None = None, limit: int = 50
    ) -> list[Incident]:
        return []

    async def get_incident(self, incident_id: str) -> Incident | None:
        return None

    async def update(self, incident_id: str, change: Callable[[Incident], None]) -> Incident:
        raise LookupError(f"no incident {incident_id!r}: this server runs without the triage agents")
