"""The incident store: incidents in JetStream KV ``incidents``, changes on ``gpu.incidents.*``.

Writes are compare-and-set on the KV revision, so two agent replicas cannot overwrite each
other's changes; every committed change is also published for subscribers (UIs, notifiers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from events import subjects
from events.incident import Incident, IncidentStatus
from events.kv import latest_values

MAX_CAS_RETRIES = 20


class IncidentConflict(Exception):
    pass


def _key(incident_id: str) -> str:
    return f"inc.{incident_id}"


class IncidentStore:
    def __init__(self, js: JetStreamContext, kv: KeyValue) -> None:
        self._js = js
        self._kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext) -> IncidentStore:
        return cls(js, await js.key_value(subjects.BUCKET_INCIDENTS))

    async def create(self, incident: Incident) -> Incident:
        """Store a new incident. Incident ids are derived from their first event, so when the agent
        died after storing it but before acknowledging the event, the redelivered event opens the
        same id: the stored incident is returned, unchanged, and nothing is counted twice."""
        data = incident.model_dump_json().encode()
        try:
            await self._kv.create(_key(incident.id), data)
        except KeyWrongLastSequenceError:
            stored = await self.get_incident(incident.id)
            if stored is not None:
                return stored
            raise
        await self._publish(incident, data)
        return incident

    async def get_incident(self, incident_id: str) -> Incident | None:
        try:
            entry = await self._kv.get(_key(incident_id))
        except KeyNotFoundError:
            return None
        return Incident.model_validate_json(entry.value) if entry.value else None

    async def update(self, incident_id: str, change: Callable[[Incident], None]) -> Incident:
        """Apply ``change`` to the stored incident and write it back if nobody wrote in between."""
        for _ in range(MAX_CAS_RETRIES):
            entry = await self._kv.get(_key(incident_id))
            if not entry.value:
                raise KeyNotFoundError
            incident = Incident.model_validate_json(entry.value)
            change(incident)
            data = incident.model_dump_json().encode()
            try:
                await self._kv.update(_key(incident_id), data, last=entry.revision)
            except KeyWrongLastSequenceError:
                continue
            await self._publish(incident, data)
            return incident
        raise IncidentConflict(f"incident {incident_id} kept changing under us")

    async def list_incidents(
        self, statuses: Iterable[IncidentStatus] | None = None, limit: int = 50
    ) -> list[Incident]:
        wanted = set(statuses) if statuses else None
        found: list[Incident] = []
        for value in await latest_values(self._kv):
            incident = Incident.model_validate_json(value)
            if wanted is None or incident.status in wanted:
                found.append(incident)
        found.sort(key=lambda i: i.opened_at, reverse=True)
        return found[:limit]

    async def _publish(self, incident: Incident, data: bytes) -> None:
        await self._js.publish(subjects.incident(incident.cluster, incident.id), data)
