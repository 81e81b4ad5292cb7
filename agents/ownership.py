"""Which agent replica works on what, through leases in KV (``events.leases``).

- **Incidents**: a replica owns the incidents it mitigates through the lease ``incident.<id>``
  (holder: the replica). It takes the lease when it opens the incident or finds it unowned
  (``resume``, the takeover sweep of the watch loop), renews every owned lease while it lives, and
  gives it up when nothing of the incident waits any more. The lease's fencing token goes into
  every runbook run-state write (``RunState.fence``): a replica that lost the lease (paused past
  its TTL, partitioned) is refused the next write, before it could call another tool.
- **Turns**: incidents on one node take turns, and incidents of one job plan one at a time, across
  replicas: the lease ``node.<node>`` / ``job.<job>`` (holder: replica and incident) is a lock
  with a TTL, renewed while held, so a holder that dies frees it ``ttl_s`` later.

``owned`` is this replica's memory of the leases it holds (to renew them and to know its tokens);
the leases themselves, what any replica decides by, are in KV.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from nats.errors import ConnectionClosedError
from nats.js import JetStreamContext

from agents.claims import CorrelationClaims
from events.leases import DEFAULT_TTL_S, Leases, incident_lease

log = logging.getLogger(__name__)

TURN_POLL_S = (0.02, 0.5)
"""How often a replica waiting for its turn looks again (growing from the first to the second)."""


@dataclass
class Ownership:
    leases: Leases
    replica: str
    owned: dict[str, int] = field(default_factory=dict)
    """incident id -> the fencing token of this replica's lease on it."""
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    async def take(self, incident_id: str) -> int | None:
        """This replica's fencing token for the incident, taking the lease if it is free or
        expired; None while another live replica owns it."""
        token = await self.leases.take(incident_lease(incident_id), self.replica)
        if token is None:
            self.owned.pop(incident_id, None)
            return None
        if incident_id not in self.owned:
            self.owned[incident_id] = token
        return self.owned[incident_id]

    def token(self, incident_id: str) -> int:
        return self.owned.get(incident_id, 0)

    async def renew(self) -> list[str]:
        """Renew every owned lease; the incidents whose lease another replica took are dropped
        (and returned)."""
        ids = list(self.owned)
        kept = await asyncio.gather(*(self.leases.renew(incident_lease(i), self.replica) for i in ids))
        lost = [i for i, ok in zip(ids, kept, strict=True) if not ok]
        for incident_id in lost:
            log.warning("lost the lease on %s: another replica owns it now", incident_id)
            self.owned.pop(incident_id, None)
        return lost

    async def release(self, incident_id: str) -> None:
        if self.owned.pop(incident_id, None) is not None:
            await self.leases.release(incident_lease(incident_id), self.replica)

    async def owner(self, incident_id: str) -> str | None:
        return await self.leases.holder(incident_lease(incident_id))

    @contextlib.asynccontextmanager
    async def turn(self, name: str, who: str) -> AsyncIterator[None]:
        """Hold the lock ``name`` (a node, a job) for ``who``, waiting for it; renewed while held."""
        holder = f"{self.replica}/{who}"
        delay = TURN_POLL_S[0]
        while True:
            released = self._released  # set by the next release in this replica
            if await self.leases.take(name, holder) is not None:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(released.wait(), timeout=delay)
            delay = min(delay * 2, TURN_POLL_S[1])
        done = asyncio.Event()
        renewal = asyncio.create_task(self._keep(name, holder, done), name=f"renew {name}")
        try:
            yield
        finally:
            # Stopped, not cancelled: a cancellation inside a NATS request can be swallowed by the
            # client (it surfaces as a timeout), and the renewal would go on forever.
            done.set()
            await asyncio.wait([renewal], timeout=self.leases.ttl_s)
            await asyncio.shield(self.leases.release(name, holder))
            released, self._released = self._released, asyncio.Event()
            released.set()  # every waiter of this replica looks again at once

    async def _keep(self, name: str, holder: str, done: asyncio.Event) -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout=self.leases.ttl_s / 3)
                return
            try:
                if not await self.leases.renew(name, holder):
                    log.warning("the lock %s of %s expired while held", name, holder)
                    return
            except ConnectionClosedError:
                return  # shutting down
            except Exception as exc:  # a NATS fault: the next renewal tries again
                log.warning("renewing %s failed: %r", name, exc)


@dataclass
class Coordination:
    """What agent replicas share: correlation claims and leases."""

    claims: CorrelationClaims
    ownership: Ownership

    @classmethod
    async def open(
        cls, js: JetStreamContext, *, name: str = "agent", lease_ttl_s: float = DEFAULT_TTL_S
    ) -> Coordination:
        replica = f"{name}-{uuid.uuid4().hex[:8]}"
        leases = await Leases.open(js, ttl_s=lease_ttl_s)
        return cls(await CorrelationClaims.open(js), Ownership(leases, replica))

    @classmethod
    def in_memory(cls, *, name: str = "agent", lease_ttl_s: float = DEFAULT_TTL_S) -> Coordination:
        """One replica alone (no NATS): the same rules, nothing shared."""
        replica = f"{name}-{uuid.uuid4().hex[:8]}"
        return cls(CorrelationClaims.in_memory(), Ownership(Leases.in_memory(ttl_s=lease_ttl_s), replica))
