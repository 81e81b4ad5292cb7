"""The incident store: incidents in JetStream KV ``incidents``, changes on ``gpu.incidents.*``.

Writes are compare-and-set on the KV revision (``events.documents``), so two agent replicas
cannot overwrite each other's changes; every committed change is also published for subscribers
(UIs, notifiers).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from nats.js import JetStreamContext

from events import subjects
from events.documents import DocumentExists, Documents, KvDocuments, MemoryDocuments
from events.incident import Incident, IncidentStatus

Publish = Callable[[Incident], Awaitable[None]]


def _key(incident_id: str) -> str:
    return f"inc.{incident_id}"


class IncidentStore:
    def __init__(self, docs: Documents[Incident], publish: Publish | None = None) -> None:
        self.docs = docs
        self._publish = publish

    @classmethod
    async def open(cls, js: JetStreamContext) -> IncidentStore:
        async def publish(incident: Incident) -> None:
            await js.publish(
                subjects.incident(incident.cluster, incident.id), incident.model_dump_json().encode()
            )

        return cls(KvDocuments(await js.key_value(subjects.BUCKET_INCIDENTS), Incident), publish)

    @classmethod
    def in_memory(cls) -> IncidentStore:
        """For tests and a process without NATS: the same compare-and-set semantics, no publishing."""
        return cls(MemoryDocuments(Incident))

    async def create(self, incident: Incident) -> Incident:
        """Store a new incident. Incident ids are derived from their first event, so when the agent
        died after storing it but before acknowledging the event, the redelivered event opens the
        same id: the stored incident is returned, unchanged, and nothing is counted twice."""
        try:
            await self.docs.create(_key(incident.id), incident)
        except DocumentExists:
            stored = await self.get_incident(incident.id)
            if stored is not None:
                return stored
            raise
        await self._published(incident)
        return incident

    async def get_incident(self, incident_id: str) -> Incident | None:
        return await self.docs.get(_key(incident_id))

    async def update(self, incident_id: str, change: Callable[[Incident], None]) -> Incident:
        """Apply ``change`` to the stored incident and write it back if nobody wrote in between
        (``DocumentMissing`` when there is no such incident)."""
        incident = await self.docs.update(_key(incident_id), change)
        await self._published(incident)
        return incident

    async def list_incidents(
        self, statuses: Iterable[IncidentStatus] | None = None, limit: int = 50
    ) -> list[Incident]:
        wanted = set(statuses) if statuses else None
        found = [i for i in await self.docs.values() if wanted is None or i.status in wanted]
        found.sort(key=lambda i: i.opened_at, reverse=True)
        return found[:limit]

    async def _published(self, incident: Incident) -> None:
        if self._publish is not None:
            await self._publish(incident)
