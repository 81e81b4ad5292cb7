"""Mitigation as a task per incident, under this replica's lease (a base of ``agents.triage.TriageAgent``).

A task takes the incident's lease (or leaves the incident to the live replica that holds it), runs
the plan through ``agents.mitigation.Mitigator``, rides out NATS faults by starting again after a
backoff (the runbook runs resume from their persisted steps), escalates any other failure, writes
the summary for people, and gives the lease up once nothing of the incident waits any more. The
leases of the incidents this replica owns are renewed in the background while it owns any.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from functools import partial

from nats.errors import ConnectionClosedError

from agents.correlator import Correlator
from agents.incident_edits import escalate, needs_owner
from agents.mitigation import Mitigator, relearn
from agents.ownership import Ownership
from agents.store import IncidentStore
from agents.summaries import Summarizer
from events.backoff import Backoff, is_transient, retry_transient
from events.incident import Incident
from events.liveness import Liveness
from runbooks.state import RunFenced

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

MITIGATION_ATTEMPTS = 30
"""Tries of a mitigation interrupted by NATS faults (backing off up to 5 s: about two minutes)."""


class MitigationTasks:
    """Starts, retries and drains the mitigation tasks of a triage agent (its ``__init__`` sets the state)."""

    store: IncidentStore
    clock: Clock
    correlator: Correlator
    summarizer: Summarizer | None
    ownership: Ownership
    mitigation: Mitigator
    mitigation_retries: int
    _tasks: dict[str, asyncio.Task[None]]
    _held: dict[str, asyncio.Task[None]]
    _renewer: asyncio.Task[None] | None

    def _keep_leases(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew_leases(), name="renew incident leases")

    async def _renew_leases(self) -> None:
        """Renew this replica's incident leases while it owns any (a third of the TTL apart)."""
        while self.ownership.owned:
            await asyncio.sleep(self.ownership.leases.ttl_s / 3)
            try:
                await self.ownership.renew()
            except ConnectionClosedError:
                return  # the process is shutting down: its leases expire by themselves
            except Exception as exc:  # NATS unavailable: the next round tries again
                log.warning("renewing incident leases failed: %r", exc)

    def start_mitigation(self, incident_id: str) -> None:
        if incident_id in self._tasks and not self._tasks[incident_id].done():
            return
        held = self._held.get(incident_id)
        if held is not None and held is not asyncio.current_task():
            return  # it waits for concurrent signals; its hold starts it
        task = asyncio.create_task(self._mitigate_owned(incident_id), name=f"mitigate {incident_id}")
        self._tasks[incident_id] = task
        self._tasks = {i: t for i, t in self._tasks.items() if not t.done() or i == incident_id}

    async def resume(self) -> int:
        """Re-learn the recent Xid incidents, so an event redelivered after a crash joins its
        incident instead of opening a second one for the same fault; then take over the unfinished
        incidents nobody owns (unowned, or their owner's lease expired) — not a live peer's."""
        for incident in await self.store.list_incidents(limit=10_000):
            relearn(self.correlator, incident)
        return await self.mitigation.recover()

    async def _mitigate_owned(self, incident_id: str) -> None:
        """Mitigate the incident if this replica owns it (or can take it: unowned, lease expired);
        give the lease up once nothing of it waits any more."""
        try:
            if (
                await retry_transient(lambda: self.ownership.take(incident_id), attempts=MITIGATION_ATTEMPTS)
                is None
            ):
                log.info("incident %s belongs to another live replica; leaving it", incident_id)
                return
        except Exception:
            log.exception("could not take the lease on %s", incident_id)
            return
        self._keep_leases()
        await self._mitigate_logged(incident_id)
        try:
            incident = await self.store.get_incident(incident_id)
            if incident is not None and not needs_owner(incident):
                await self.ownership.release(incident_id)
        except Exception as exc:  # the lease expires by itself
            log.warning("releasing the lease on %s failed: %r", incident_id, exc)

    async def drain(self) -> None:
        """Wait for every mitigation started so far (and for held incidents to be released)."""
        await self.mitigation.poke()
        while pending := [t for t in (*self._held.values(), *self._tasks.values()) if not t.done()]:
            await asyncio.gather(*pending, return_exceptions=True)

    async def _mitigate_logged(self, incident_id: str) -> None:
        # A NATS fault mid-mitigation (a KV write during a leader election, a server restarting)
        # is ridden out: the mitigation starts again after a backoff and resumes as after a crash —
        # the runbook runs from their persisted steps, the idempotency keys keep every action to
        # one execution. Any other error, or NATS still failing after the budget, escalates.
        backoff = Backoff(0.2, 5.0)
        for attempt in range(1, MITIGATION_ATTEMPTS + 1):
            try:
                await self.mitigate(incident_id)
                break
            except RunFenced as exc:
                # Another replica took the incident over (this one's lease expired): it goes on.
                log.warning("mitigation of %s stops: %s", incident_id, exc)
                self.ownership.owned.pop(incident_id, None)
                return
            except Exception as exc:
                if is_transient(exc) and attempt < MITIGATION_ATTEMPTS:
                    self.mitigation_retries += 1
                    log.warning("mitigation of %s interrupted by %r; resuming it", incident_id, exc)
                    await backoff.wait()
                    continue
                log.exception("mitigation of %s failed", incident_id)
                await self._escalate(incident_id, f"mitigation crashed: {exc!r}")
                break
        await self._summarize(incident_id)

    async def _escalate(self, incident_id: str, why: str) -> None:
        edit = partial(escalate, why=why, now=self.clock())

        async def write() -> Incident:
            return await self.store.update(incident_id, edit)

        await retry_transient(write, attempts=MITIGATION_ATTEMPTS)

    async def _summarize(self, incident_id: str) -> None:
        """Write the plain-language summary for people once the agent is done with the incident."""
        if self.summarizer is None:
            return
        try:
            incident = await self.store.get_incident(incident_id)
            if incident is None:
                return
            summary = await self.summarizer.summarize(incident)
            now = self.clock()

            def apply(inc: Incident) -> None:
                inc.summary = summary.text
                if summary.note:  # the template stood in for Claude: say why
                    inc.note(f"summary by {summary.by}", summary.note, at=now)

            await self.store.update(incident_id, apply)
        except Exception:
            log.exception("summary of %s failed", incident_id)

    async def mitigate(self, incident_id: str) -> Incident:
        """Plan (once) and run the plan's runbooks; see ``agents.mitigation``."""
        return await self.mitigation.mitigate(incident_id)

    async def watch_safety(self, stop: asyncio.Event, liveness: Liveness | None = None) -> None:
        """Resume or abandon runs parked for approval, and the breaker's backlog, until ``stop``
        (through any NATS or MCP fault; each round is reported to ``liveness``)."""
        probe = liveness.probe("watch approvals and breaker") if liveness is not None else None
        await self.mitigation.watch(stop, probe=probe)
