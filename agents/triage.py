"""The triage agent: events in, incidents out, mitigation through runbooks over MCP.

It consumes ``GPU_EVENTS`` with a durable batch pull consumer (``agents.consumer``). Each batch is correlated
into incidents and persisted before it is acknowledged; mitigation runs as a task per incident, so
a slow runbook never holds up the event stream. On start-up, incidents left open or mitigating by
a crash are picked up again, and their runbook runs resume from their persisted steps.

Several replicas may run against one NATS (``agents.claims``, ``agents.ownership``): the first
replica to see a fault claims it and opens its incident; a replica that sees another signal of the
same fault joins that incident; each incident is mitigated by the replica holding its lease, and
taken over by another when that lease expires.

This module takes the batches in (correlate, persist, claim or join, hold before planning); the
mitigation tasks and the leases they run under are in ``agents.triage_tasks``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import partial

from nats.js import JetStreamContext
from pydantic import ValidationError

from agents import intake
from agents.claims import epoch_text
from agents.consumer import EventConsumer
from agents.correlator import Correlation, Correlator
from agents.mitigation import Mitigator
from agents.ownership import Coordination
from agents.planner import Planner
from agents.store import IncidentStore
from agents.summaries import Summarizer
from agents.topology import load_fabric
from agents.triage_tasks import MITIGATION_ATTEMPTS, Clock, MitigationTasks
from contracts.client import ToolClient
from events.backoff import Backoff
from events.dead_letter import DeadLetter, describe, describe_invalid, disposition, publish_dead_letter
from events.documents import DocumentExists, DocumentMissing
from events.fabric import FabricMap
from events.liveness import Liveness
from events.models import AnyEvent, parse_event, utcnow
from runbooks.engine import RunbookEngine

__all__ = ["JOIN_ATTEMPTS", "MITIGATION_ATTEMPTS", "TriageAgent"]

log = logging.getLogger(__name__)

JOIN_ATTEMPTS = 40
"""Reads of an incident another replica claimed but has not stored yet (backing off up to 0.2 s)."""


@dataclass
class _Pending:
    """Changes to one incident gathered over a batch, written once."""

    events: list[AnyEvent] = field(default_factory=list)
    correlations: list[Correlation] = field(default_factory=list)


class TriageAgent(MitigationTasks):
    """Consumes the event stream, turns it into incidents and mitigates them (module docstring)."""

    def __init__(
        self,
        *,
        js: JetStreamContext,
        store: IncidentStore,
        tools: ToolClient,
        engine: RunbookEngine,
        planner: Planner,
        summarizer: Summarizer | None = None,
        clock: Clock = utcnow,
        dedupe_window_s: float = 600.0,
        group_wait_s: float = 2.0,
        fabric: FabricMap | None = None,
        coordination: Coordination | None = None,
    ) -> None:
        self.js = js
        self.store = store
        self.tools = tools
        self.engine = engine
        self.planner = planner
        self.summarizer = summarizer
        self.clock = clock
        self.correlator = Correlator(dedupe_window_s, fabric=fabric)
        self.group_wait_s = group_wait_s
        self.events_seen = 0
        self.events_ignored = 0
        self.dead_lettered = 0
        self.mitigation_retries = 0
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # Without NATS (tests of one agent) the claims and leases live in this process.
        self.coordination = coordination or Coordination.in_memory()
        self.ownership = self.coordination.ownership
        self.joined_elsewhere = 0
        """New-looking faults this replica found claimed by another replica's incident, and joined."""
        self.mitigation = Mitigator(
            store=store,
            tools=tools,
            engine=engine,
            planner=planner,
            clock=clock,
            start=self.start_mitigation,
            ownership=self.ownership,
            claims=self.coordination.claims,
        )
        self._renewer: asyncio.Task[None] | None = None
        # New incidents correlated but not stored yet (their batch failed: it comes again).
        self._unwritten: OrderedDict[str, Correlation] = OrderedDict()
        # Incidents that wait ``group_wait_s`` (and for the consumer to catch up) before planning,
        # so concurrent signals can fold them into a shared-part incident first.
        self._held: dict[str, asyncio.Task[None]] = {}
        self._caught_up = asyncio.Event()
        self._caught_up.set()
        self._batch_size = 0
        self.consumer: EventConsumer | None = None

    async def learn_fabric(self) -> FabricMap:
        """Learn where every node sits (leaf switch, rack, NVLink domain) through ``list_nodes``."""
        self.correlator.fabric = await load_fabric(self.tools)
        return self.correlator.fabric

    async def start(
        self,
        *,
        durable: str = "triage",
        batch_size: int = 1024,
        idle_wait_s: float = 0.5,
        liveness: Liveness | None = None,
    ) -> None:
        """Consume ``GPU_EVENTS`` with the agent's pull loop (``agents.consumer``: one ack per
        batch, riding out NATS faults); ``stop()`` ends it. Raises if the consumer cannot be made."""
        self._batch_size = batch_size
        self.consumer = EventConsumer(
            self.js,
            self.handle_payloads,
            durable=durable,
            batch_size=batch_size,
            idle_wait_s=idle_wait_s,
            on_backlog=self._behind,
            liveness=liveness,
        )
        await self.consumer.start()

    async def stop(self) -> None:
        """Stop consuming (after the batch in hand)."""
        if self.consumer is not None:
            await self.consumer.stop()

    def _behind(self, behind: bool) -> None:
        # A full batch means a backlog: held incidents wait until the agent has seen it.
        if behind:
            self._caught_up.clear()
        else:
            self._caught_up.set()

    async def handle_payloads(self, payloads: list[tuple[str, bytes]]) -> None:
        """Validate, correlate and persist a batch; malformed payloads go to ``gpu.dlq.events``.

        Every event kind is accepted; one store write per touched incident per batch, so a storm
        of thousands of events costs a handful of writes. Validation and correlation are isolated
        per event: whatever one event raises (short of NATS being unavailable), it goes to
        ``gpu.dlq.events`` with its exact bytes and the next one proceeds — those steps are
        deterministic, so a retry would fail the same way and hold up every event behind it.
        """
        pending: dict[str, _Pending] = {}
        folds: list[tuple[str, str, str]] = []
        for subject, data in payloads:
            self.events_seen += 1
            try:
                event = parse_event(data)
            except ValidationError as exc:
                await self._dead(subject, data, f"invalid event: {describe_invalid(exc)}")
                continue
            try:
                corr = self.correlator.assign(event)
            except Exception as exc:
                if disposition(exc) == "retry":
                    raise
                log.exception("correlating the event on %s failed; dead-lettered", subject)
                await self._dead(subject, data, f"could not correlate: {describe(exc)}")
                continue
            if corr.kind == "ignored":
                self.events_ignored += 1
                continue
            if corr.new:
                self._unwritten[corr.incident_id] = corr
                while len(self._unwritten) > 10_000:
                    self._unwritten.popitem(last=False)
            slot = pending.setdefault(corr.incident_id, _Pending())
            slot.events.append(event)
            slot.correlations.append(corr)
            if corr.shared is not None:
                folds += [(member, corr.incident_id, corr.shared.reason) for member in corr.shared.folds]
            folds += [(member, corr.incident_id, corr.reason) for member in corr.folds]
        # Different incidents are independent records (compare-and-set per key): write them at once.
        await asyncio.gather(*(self._persist(incident_id, slot) for incident_id, slot in pending.items()))
        for member, parent, why in folds:
            await self._fold(member, parent, why)

    async def _persist(self, incident_id: str, slot: _Pending) -> None:
        corr = slot.correlations[0]
        # A batch that failed after correlating (NATS unavailable) comes again: the correlator
        # remembers its new incidents by now, so the one it opened is still to be stored.
        opening = corr if corr.new else self._unwritten.get(incident_id)
        if opening is None:
            return await self._add(incident_id, slot)
        await self._open(incident_id, slot, opening)
        self._unwritten.pop(incident_id, None)

    async def _open(self, incident_id: str, slot: _Pending, corr: Correlation) -> None:
        first = slot.events[0]
        now = self.clock()
        window = self.correlator.window
        claim = await self.coordination.claims.claim(
            first.cluster, corr.keys, incident_id, first.time, window
        )
        if claim.incident_id != incident_id:
            # Another replica opened the incident for this fault: join it, and teach the
            # correlator that this fault's events belong there from now on.
            self.correlator.adopt(incident_id, claim.incident_id)
            await self._join(claim.incident_id, incident_id, slot)
            return
        await self.ownership.take(incident_id)
        self._keep_leases()
        incident = intake.open_incident(incident_id, first, corr, now)
        incident.fault_epoch = epoch_text(claim.epoch)
        intake.absorb(incident, slot.events[1:], slot.correlations[1:], now)
        try:
            await self.store.create(incident)
        except DocumentExists:
            # Already stored (a redelivered batch after a restart): add the events instead.
            await self.store.update(
                incident_id,
                partial(intake.absorb, events=slot.events, correlations=slot.correlations, now=now),
            )
            return
        if incident.status != "open":
            return
        if corr.hold:
            self._hold(incident_id)
        else:
            self.start_mitigation(incident_id)

    async def _add(self, incident_id: str, slot: _Pending) -> None:
        now = self.clock()
        incident = await self.store.update(
            incident_id, partial(intake.absorb, events=slot.events, correlations=slot.correlations, now=now)
        )
        reopened = incident.status == "open" and incident.plan is None and incident.folded_into is None
        if reopened and incident_id not in self._held:
            self.start_mitigation(incident_id)  # reopened by new evidence (see intake.reopen)

    async def _join(self, shared: str, local: str, slot: _Pending) -> None:
        """Fold the batch's events of a fault into the incident another replica opened for it
        (compare-and-set). The claim is written before the incident: wait a moment for it; if its
        replica died in between, store the incident ourselves (the takeover sweep plans it)."""
        self.joined_elsewhere += 1
        now = self.clock()
        change = partial(intake.absorb, events=slot.events, correlations=slot.correlations, now=now)
        backoff = Backoff(0.005, 0.2)
        for _ in range(JOIN_ATTEMPTS):
            try:
                await self.store.update(shared, change)
                return
            except DocumentMissing:
                await backoff.wait()
        log.warning("incident %s was claimed but never stored; opening it from %s's events", shared, local)
        incident = intake.open_incident(shared, slot.events[0], slot.correlations[0], now)
        intake.absorb(incident, slot.events[1:], slot.correlations[1:], now)
        try:
            await self.store.create(incident)
        except DocumentExists:
            await self.store.update(shared, change)

    async def _fold(self, member: str, parent: str, why: str) -> None:
        try:
            await self.store.update(member, partial(intake.fold, into=parent, why=why, now=self.clock()))
        except DocumentMissing:
            log.warning("incident %s to fold into %s is not in the store", member, parent)

    def _hold(self, incident_id: str) -> None:
        if incident_id not in self._held:
            self._held[incident_id] = asyncio.create_task(
                self._release(incident_id), name=f"hold {incident_id}"
            )

    async def _release(self, incident_id: str) -> None:
        """After ``group_wait_s``, and once the consumer has caught up (capped), plan unless the
        incident was folded or cancelled meanwhile."""
        try:
            await asyncio.sleep(self.group_wait_s)
            cap = max(10 * self.group_wait_s, 5.0)
            try:
                await asyncio.wait_for(self._caught_up.wait(), timeout=cap)
            except TimeoutError:
                log.warning(
                    "still behind the event stream after %.0f s; planning %s anyway", cap, incident_id
                )
            incident = await self.store.get_incident(incident_id)
            if incident is not None and incident.status == "open" and incident.folded_into is None:
                self.start_mitigation(incident_id)
        finally:
            self._held.pop(incident_id, None)

    async def _dead(self, subject: str, data: bytes, reason: str) -> None:
        self.dead_lettered += 1
        await publish_dead_letter(
            self.js, DeadLetter(source="events", subject=subject, reason=reason, payload=data)
        )
