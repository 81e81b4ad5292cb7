"""Leases in the KV bucket ``leases``: who owns what among agent replicas, for how long.

A lease is a document ``{holder, expires_at}`` under a name (``incident.<id>``, ``node.<node>``,
``job.<job>``). It is taken with compare-and-set: ``create`` when nobody holds it, ``replace`` on
the revision read when it expired (or is already the taker's), so two replicas can never both
take it. The holder renews it before it expires; a holder that dies stops renewing and the lease
is free for anyone ``ttl_s`` later.

The **fencing token** of a lease is the KV revision of the write that took it: revisions of a
bucket only grow, so a later owner always has a higher token than the one it took over from.
Writes that must not come from a deposed owner (runbook run state) carry the token and are refused
when the stored one is higher (``runbooks.state.RunFenced``).

Expiry is on wall-clock time (``time.time``), never a simulated clock: a lease is about processes.
The bucket's own max age (5 minutes) only collects leases nobody released.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from nats.js import JetStreamContext
from pydantic import BaseModel

from events import subjects
from events.documents import DocumentConflict, DocumentExists, Documents, KvDocuments, MemoryDocuments

Clock = Callable[[], float]
DEFAULT_TTL_S = 15.0


class Lease(BaseModel):
    holder: str
    expires_at: float

    def live(self, now: float) -> bool:
        return now < self.expires_at


def incident_lease(incident_id: str) -> str:
    """The lease of the agent replica that owns (mitigates) an incident."""
    return f"incident.{incident_id}"


def lease_key(name: str) -> str:
    """KV keys allow ``[-/_=.a-zA-Z0-9]``: everything else becomes ``_``."""
    return "".join(c if c.isalnum() or c in "-_=." else "_" for c in name)


class Leases:
    """Take, renew, release and look up leases (KV, or in memory for one process)."""

    def __init__(
        self, docs: Documents[Lease], *, ttl_s: float = DEFAULT_TTL_S, clock: Clock = time.time
    ) -> None:
        if ttl_s <= 0:
            raise ValueError(f"a lease needs a positive TTL, not {ttl_s}")
        self.docs = docs
        self.ttl_s = ttl_s
        self.clock = clock

    @classmethod
    async def open(cls, js: JetStreamContext, *, ttl_s: float = DEFAULT_TTL_S) -> Leases:
        return cls(KvDocuments(await js.key_value(subjects.BUCKET_LEASES), Lease), ttl_s=ttl_s)

    @classmethod
    def in_memory(cls, *, ttl_s: float = DEFAULT_TTL_S) -> Leases:
        return cls(MemoryDocuments(Lease), ttl_s=ttl_s)

    async def take(self, name: str, holder: str) -> int | None:
        """The fencing token when ``holder`` now holds ``name`` (newly, or already); None while
        another holder's lease is live."""
        key = lease_key(name)
        for _ in range(5):
            now = self.clock()
            mine = Lease(holder=holder, expires_at=now + self.ttl_s)
            found = await self.docs.read(key)
            try:
                if found is None:
                    return await self.docs.create(key, mine)
                if found.doc.holder != holder and found.doc.live(now):
                    return None
                return await self.docs.replace(key, mine, found.revision)
            except (DocumentExists, DocumentConflict):
                continue
        return None

    async def renew(self, name: str, holder: str) -> bool:
        """Extend ``holder``'s lease; False when it is no longer theirs (taken over, or gone)."""
        key = lease_key(name)
        for _ in range(5):
            found = await self.docs.read(key)
            if found is None or found.doc.holder != holder:
                return False
            try:
                await self.docs.replace(
                    key, Lease(holder=holder, expires_at=self.clock() + self.ttl_s), found.revision
                )
            except DocumentConflict:
                continue  # written in between (by the holder itself, or taken: read again)
            return True
        return False

    async def release(self, name: str, holder: str) -> None:
        """Give the lease up, if it is still ``holder``'s (expired now: free for anyone)."""
        key = lease_key(name)
        found = await self.docs.read(key)
        if found is None or found.doc.holder != holder:
            return
        with contextlib.suppress(DocumentConflict):
            await self.docs.replace(key, Lease(holder=holder, expires_at=0.0), found.revision)

    async def holder(self, name: str) -> str | None:
        """Who holds ``name`` now (None: nobody, or the lease expired)."""
        found = await self.docs.get(lease_key(name))
        return found.holder if found is not None and found.live(self.clock()) else None
