"""Shared correlation state: one incident per fault, however many agent replicas see its signals.

Every replica correlates the events it receives in its own ``Correlator`` (pure, in memory). Events
of one fault reach different replicas through the shared durable consumer, so when a replica's
correlator would open an incident, it first **claims the fault** in the KV bucket ``correlation``:

- the key is the fault's correlation key (a GPU under each of its names, a node-wide Xid group, a
  job, a shared part of the topology: ``Correlation.keys``), per cluster;
- the value names the incident that owns the fault, when the fault began (its *epoch*) and when
  it was last claimed;
- a claim is ``create`` (compare-and-set on "no such key"); an existing claim still inside the
  correlation window (measured from its last claim, on event time) wins, and the replica **joins**
  that incident instead of opening its own (it folds its events into the stored incident with
  compare-and-set); a claim older than the window is replaced compare-and-set (a new fault epoch).

Two replicas racing on one key: exactly one ``create`` succeeds, the other reads the winner. The
claim also carries the fault epoch into the incident (``Incident.fault_epoch``), from which the
idempotency keys of its mutations are made.

``JobFaults`` keeps, per job, the latest incident planned to act on it (a cleanup Xid on another
node of the gang folds into it; a second fault joins the restart it planned), in the same bucket.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta

from nats.js import JetStreamContext
from pydantic import BaseModel

from events import subjects
from events.documents import DocumentConflict, DocumentExists, Documents, KvDocuments, MemoryDocuments
from events.leases import lease_key


class FaultClaim(BaseModel):
    incident_id: str
    epoch: datetime
    """The event time of the fault's first signal."""
    last_seen: datetime
    """The event time of the latest signal that claimed it (a replica without the fault in memory)."""


class JobFault(BaseModel):
    incident_id: str
    at: datetime
    xids: list[int]


def epoch_text(at: datetime) -> str:
    return at.strftime("%Y%m%dT%H%M%S")


class CorrelationClaims:
    def __init__(self, claims: Documents[FaultClaim], jobs: Documents[JobFault]) -> None:
        self.claims = claims
        self.jobs = jobs

    @classmethod
    async def open(cls, js: JetStreamContext) -> CorrelationClaims:
        kv = await js.key_value(subjects.BUCKET_CORRELATION)
        return cls(KvDocuments(kv, FaultClaim), KvDocuments(kv, JobFault))

    @classmethod
    def in_memory(cls) -> CorrelationClaims:
        return cls(MemoryDocuments(FaultClaim), MemoryDocuments(JobFault))

    async def claim(
        self, cluster: str, keys: tuple[str, ...], incident_id: str, at: datetime, window: timedelta
    ) -> FaultClaim:
        """The claim that owns the fault behind ``keys``: ours (``incident_id`` opens it), or the
        live claim of another replica's incident (join it)."""
        if not keys:
            return FaultClaim(incident_id=incident_id, epoch=at, last_seen=at)
        names = [_claim_key(cluster, key) for key in keys]
        for _ in range(10):
            for name in names:
                found = await self.claims.read(name)
                if found is not None and _live(found.doc, at, window):
                    if at > found.doc.last_seen:
                        await self._touch(name, found.doc, found.revision, at)
                    return found.doc
            mine = FaultClaim(incident_id=incident_id, epoch=at, last_seen=at)
            primary = await self.claims.read(names[0])
            if primary is not None and _live(primary.doc, at, window):
                continue  # claimed since we looked: join it (next round)
            try:
                if primary is None:
                    await self.claims.create(names[0], mine)
                else:  # an old fault's claim: a new epoch
                    await self.claims.replace(names[0], mine, primary.revision)
            except (DocumentExists, DocumentConflict):
                continue  # another replica claimed it just now: read theirs
            for alias in names[1:]:
                await self._alias(alias, mine)
            return mine
        raise DocumentConflict(f"correlation claim on {keys[0]} kept changing; retry")

    async def _touch(self, name: str, claim: FaultClaim, revision: int, at: datetime) -> None:
        with contextlib.suppress(DocumentConflict):  # someone else touched it: as good
            await self.claims.replace(name, claim.model_copy(update={"last_seen": at}), revision)

    async def _alias(self, name: str, claim: FaultClaim) -> None:
        found = await self.claims.read(name)
        try:
            if found is None:
                await self.claims.create(name, claim)
            elif found.doc.incident_id != claim.incident_id:
                await self.claims.replace(name, claim, found.revision)
        except (DocumentExists, DocumentConflict):
            pass  # the primary key decides; the other names only help

    # -- the latest fault of each job ---------------------------------------------------------------

    async def job_fault(self, cluster: str, job: str) -> JobFault | None:
        return await self.jobs.get(_job_key(cluster, job))

    async def remember_job_fault(self, cluster: str, job: str, fault: JobFault) -> None:
        def become(doc: JobFault) -> None:
            doc.incident_id, doc.at, doc.xids = fault.incident_id, fault.at, list(fault.xids)

        await self.jobs.update(_job_key(cluster, job), become, default=lambda: fault.model_copy())


def _live(claim: FaultClaim, at: datetime, window: timedelta) -> bool:
    return abs(at - claim.last_seen) <= window


def _claim_key(cluster: str, key: str) -> str:
    return lease_key(f"fault.{cluster}.{key}")


def _job_key(cluster: str, job: str) -> str:
    return lease_key(f"job.{cluster}.{job}")
