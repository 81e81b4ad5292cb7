"""The triage agent: events in, incidents out, mitigation through runbooks over MCP.

It consumes ``GPU_EVENTS`` with a durable FastStream batch pull consumer. Each batch is correlated
into incidents and persisted before it is acknowledged; mitigation runs as a task per incident, so
a slow runbook never holds up the event stream. On start-up, incidents left open or mitigating by
a crash are picked up again, and their runbook runs resume from their persisted steps.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Annotated, Any

from faststream import AckPolicy, Context
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.message import NatsBatchMessage
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from pydantic import ValidationError

from agents import intake
from agents.consumer import EventConsumer
from agents.correlator import AnyEvent, Correlation, Correlator
from agents.incident_edits import escalate
from agents.mitigation import Mitigator, relearn
from agents.planner import Planner
from agents.store import IncidentStore
from agents.summaries import Summarizer
from agents.topology import load_fabric
from contracts.client import ToolClient
from events import faststream_compat, subjects
from events.fabric import FabricMap
from events.incident import Incident
from events.models import DeadLetter, parse_event, utcnow
from events.publish import publish_dead_letter
from runbooks.engine import RunbookEngine

log = logging.getLogger(__name__)

# The whole pulled batch, with subjects and headers (one injection per batch, not per message).
BatchMessage = Annotated[NatsBatchMessage, Context("message")]

Clock = Callable[[], datetime]


@dataclass
class _Pending:
    """Changes to one incident gathered over a batch, written once."""

    events: list[AnyEvent] = field(default_factory=list)
    correlations: list[Correlation] = field(default_factory=list)


class TriageAgent:
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
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.mitigation = Mitigator(
            store=store, tools=tools, engine=engine, planner=planner, clock=clock, start=self.start_mitigation
        )
        # Incidents that wait ``group_wait_s`` (and for the consumer to catch up) before planning,
        # so concurrent signals can fold them into a shared-part incident first.
        self._held: dict[str, asyncio.Task[None]] = {}
        self._caught_up = asyncio.Event()
        self._caught_up.set()
        self._batch_size = 0
        self.consumer: EventConsumer | None = None
        self._starting: asyncio.Future[None] | None = None

    async def learn_fabric(self) -> FabricMap:
        """Learn where every node sits (leaf switch, rack, NVLink domain) through ``list_nodes``."""
        self.correlator.fabric = await load_fabric(self.tools)
        return self.correlator.fabric

    async def start(
        self, *, durable: str = "triage", batch_size: int = 1024, idle_wait_s: float = 0.5
    ) -> None:
        """Consume ``GPU_EVENTS`` with the agent's own pull loop (``agents.consumer``: one ack per
        batch); ``stop()`` ends it."""
        self._batch_size = batch_size
        self.consumer = EventConsumer(
            self.js,
            self.handle_payloads,
            durable=durable,
            batch_size=batch_size,
            idle_wait_s=idle_wait_s,
            on_backlog=self._behind,
        )
        await self.consumer.start()

    async def stop(self) -> None:
        """Stop consuming (after the batch in hand)."""
        if self._starting is not None:
            # A start that failed was logged when it failed; there is nothing to stop then.
            await asyncio.gather(self._starting, return_exceptions=True)
            self._starting = None
        if self.consumer is not None:
            await self.consumer.stop()

    def _behind(self, behind: bool) -> None:
        # A full batch means a backlog: held incidents wait until the agent has seen it.
        if behind:
            self._caught_up.clear()
        else:
            self._caught_up.set()

    def subscribe(
        self,
        broker: NatsBroker | None = None,
        *,
        durable: str = "triage",
        batch_size: int = 1024,
        batch_timeout_s: float = 0.5,
    ) -> None:
        """Start consuming ``GPU_EVENTS`` now with the agent's own pull loop (as ``start()``), for
        as long as ``broker`` runs: stopping the broker stops the loop first (``stop()`` does too)."""
        self._batch_size = batch_size
        self._starting = asyncio.ensure_future(
            self.start(durable=durable, batch_size=batch_size, idle_wait_s=batch_timeout_s)
        )
        self._starting.add_done_callback(_report_start_failure)
        if broker is not None:
            stop_broker = broker.stop

            async def stop_both(*args: Any, **kwargs: Any) -> None:
                await self.stop()
                await stop_broker(*args, **kwargs)

            broker.stop = stop_both  # type: ignore[method-assign]

    def subscribe_faststream(
        self,
        broker: NatsBroker,
        *,
        durable: str = "triage",
        batch_size: int = 256,
        batch_timeout_s: float = 0.05,
    ) -> None:
        """The FastStream batch subscriber: the earlier path, kept for the before/after comparison in
        evals/benchmarks/agent_throughput.py (``subscribe``/``start`` are about twice as fast)."""
        faststream_compat.apply()
        self._batch_size = batch_size
        broker.subscriber(
            subjects.events_all(),
            stream=JStream(subjects.STREAM_EVENTS, declare=False),
            durable=durable,
            pull_sub=PullSub(batch_size=batch_size, timeout=batch_timeout_s, batch=True),
            ack_policy=AckPolicy.NACK_ON_ERROR,
        )(self.on_batch)

    async def on_batch(self, msg: BatchMessage) -> None:
        try:
            # A full batch means a backlog: held incidents wait until the agent has seen it.
            if len(msg.raw_message) >= self._batch_size > 0:
                self._caught_up.clear()
            await self.handle_payloads([(m.subject, m.data) for m in msg.raw_message])
            if len(msg.raw_message) < self._batch_size:
                self._caught_up.set()
        except Exception:
            log.exception("event batch of %d failed; it will be redelivered", len(msg.raw_message))
            raise

    async def handle_payloads(self, payloads: list[tuple[str, bytes]]) -> None:
        """Validate, correlate and persist a batch; malformed payloads go to ``gpu.dlq.events``.

        Every event kind is accepted; one store write per touched incident per batch, so a storm
        of thousands of events costs a handful of writes.
        """
        pending: dict[str, _Pending] = {}
        folds: list[tuple[str, str, str]] = []
        for subject, data in payloads:
            self.events_seen += 1
            try:
                event = parse_event(data)
            except ValidationError as exc:
                await self._dead(subject, data, f"invalid event: {exc.errors(include_url=False)}")
                continue
            corr = self.correlator.assign(event)
            if corr.kind == "ignored":
                self.events_ignored += 1
                continue
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
        first, corr = slot.events[0], slot.correlations[0]
        now = self.clock()
        if corr.new:
            incident = intake.open_incident(incident_id, first, corr, now)
            intake.absorb(incident, slot.events[1:], slot.correlations[1:], now)
            try:
                await self.store.create(incident)
            except KeyWrongLastSequenceError:
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
            return
        incident = await self.store.update(
            incident_id, partial(intake.absorb, events=slot.events, correlations=slot.correlations, now=now)
        )
        reopened = incident.status == "open" and incident.plan is None and incident.folded_into is None
        if reopened and incident_id not in self._held:
            self.start_mitigation(incident_id)  # reopened by new evidence (see intake.reopen)

    async def _fold(self, member: str, parent: str, why: str) -> None:
        try:
            await self.store.update(member, partial(intake.fold, into=parent, why=why, now=self.clock()))
        except KeyNotFoundError:
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

    # ---- mitigation -------------------------------------------------------------------------

    def start_mitigation(self, incident_id: str) -> None:
        if incident_id in self._tasks and not self._tasks[incident_id].done():
            return
        task = asyncio.create_task(self._mitigate_logged(incident_id), name=f"mitigate {incident_id}")
        self._tasks[incident_id] = task

    async def resume(self) -> int:
        """Pick up incidents a previous run left open or mitigating, and re-learn the recent Xid
        incidents, so an event redelivered after a crash joins its incident instead of opening a
        second one for the same fault (and acting on it twice)."""
        for incident in await self.store.list_incidents(limit=10_000):
            relearn(self.correlator, incident)
        unfinished = await self.store.list_incidents(["open", "mitigating"], limit=10_000)
        for incident in unfinished:
            self.start_mitigation(incident.id)
        return len(unfinished)

    async def drain(self) -> None:
        """Wait for every mitigation started so far (and for held incidents to be released)."""
        self.mitigation.poke()
        while pending := [t for t in (*self._held.values(), *self._tasks.values()) if not t.done()]:
            await asyncio.gather(*pending, return_exceptions=True)

    async def _mitigate_logged(self, incident_id: str) -> None:
        try:
            await self.mitigate(incident_id)
        except Exception as exc:
            log.exception("mitigation of %s failed", incident_id)
            why = f"mitigation crashed: {exc!r}"
            await self.store.update(incident_id, partial(escalate, why=why, now=self.clock()))
        await self._summarize(incident_id)

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

    async def watch_safety(self, stop: asyncio.Event) -> None:
        """Resume or abandon runs parked for approval, and the breaker's backlog, until ``stop``."""
        await self.mitigation.watch(stop)

    async def _dead(self, subject: str, data: bytes, reason: str) -> None:
        self.dead_lettered += 1
        await publish_dead_letter(
            self.js,
            DeadLetter(
                source="events", subject=subject, reason=reason, payload=data.decode("utf-8", "replace")
            ),
        )


def _report_start_failure(started: asyncio.Future[None]) -> None:
    if not started.cancelled() and started.exception() is not None:
        log.error("the agent could not start consuming GPU_EVENTS", exc_info=started.exception())
