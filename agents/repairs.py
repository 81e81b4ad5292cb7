"""Deferred repairs: the reset or reboot a plan queued (``Plan.deferred``), run once the node is idle.

A plan contains a fault now (isolate the GPU, restart the job elsewhere) and leaves the repair the
Xid catalog calls for until nothing runs on the node any more: a GPU reset (which also applies a
pending row remap) or a node reboot (a GPU off the bus, Xid 154 "Node Reboot Required", a
node-wide fault). The worker (one loop per agent replica, ``run``):

1. queues a repair per node (KV ``repairs``, ``events.repairs``) for every incident whose plan
   deferred one, noting it on the incident's timeline; a part suspected bad is never repaired
   and put back automatically (a person has it);
2. starts a queued repair once its incidents' containment is over and the node runs no job (and no
   reset or reboot is under way): it claims the record compare-and-set with a lease, so of two
   replicas exactly one runs it, and a replica that died mid-repair is taken over when its lease
   lapses (the runs resume from their persisted steps; their idempotency keys repeat nothing);
3. runs the chain, each step an MCP call through the gate as the agent: ``reset-gpu`` per GPU
   (falls back to ``drain-and-reboot-node``), or ``drain-and-reboot-node`` (falls back to
   ``escalate``: a ticket); the runbooks verify the GPUs are healthy again;
4. returns the node (``return-to-service``: its GPUs restored, the cordon lifted), into service or
   back to the warm spare pool it was swapped out of.

An observe-only platform runs the repair as a dry run (policy-checked, nothing changes). Every step
is on the repair's history and on its incidents' timelines; ``list_repairs`` shows them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from agents.incident_edits import add_run_actions, args_text, evidence_of, note_once, run_context
from agents.repair_checks import not_ready
from agents.store import IncidentStore
from contracts.client import ToolClient
from events.backoff import Backoff, is_transient
from events.documents import DocumentConflict, Documents
from events.incident import Incident
from events.liveness import LoopProbe
from events.models import utcnow
from events.repairs import REBOOT, RESET, RETURN, Repair, RepairBook, RepairRun, RepairStatus, repair_key
from runbooks.engine import RunbookEngine
from runbooks.state import RunState

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
LEASE_S = 300.0
ESCALATE = "escalate"
MAX_RUNS = 12
"""A chain longer than this is a bug (reset per GPU, a reboot, a ticket, the return)."""


class Lost(Exception):
    """Another replica holds the repair now."""


class RepairWorker:
    def __init__(
        self,
        *,
        store: IncidentStore,
        docs: Documents[Repair],
        tools: ToolClient,
        engine: RunbookEngine,
        owner: str,
        clock: Clock = utcnow,
        lease_s: float = LEASE_S,
    ) -> None:
        self.store = store
        self.docs = docs
        self.book = RepairBook(docs)
        self.tools = tools
        self.engine = engine
        self.owner = owner
        self.clock = clock
        self.lease_s = lease_s
        self._parked = asyncio.Event()
        self._seen: set[str] = set()
        """Incidents whose deferred repair is already recorded in KV (a read cache; KV is the truth)."""

    async def run(self, stop: asyncio.Event, every_s: float = 5.0, probe: LoopProbe | None = None) -> None:
        """Tick until ``stop``; a failed tick (NATS or the MCP server away) is retried after a backoff.
        A parked worker (``park``: a caller that ticks it itself) only waits for ``stop``."""
        backoff = Backoff(every_s, max(30.0, every_s))
        while not stop.is_set() and not self._parked.is_set():
            try:
                await self.tick()
                if probe is not None:
                    probe.ok()
                backoff.reset()
                wait = every_s
            except Exception as exc:
                if probe is not None:
                    probe.error(exc)
                log.warning("repair round failed (%r); trying again", exc, exc_info=not is_transient(exc))
                wait = backoff.delay()
            waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._parked.wait())]
            await asyncio.wait(waits, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waits:
                waiter.cancel()
        await stop.wait()

    def park(self) -> None:
        """Stop the loop's own rounds: the caller ticks (the scenario runner, in step with its clock)."""
        self._parked.set()

    async def tick(self) -> bool:
        """Queue what plans deferred, then move every active repair on; True if anything changed."""
        changed = await self.queue_deferred()
        for repair in await self.book.list_repairs(active_only=True):
            try:
                await self._advance(repair)
            except Lost:
                continue
            after = await self.docs.get(repair.key)
            changed |= after is None or _progress(after) != _progress(repair)
        return changed

    # -- queueing ---------------------------------------------------------------------------------

    async def queue_deferred(self) -> bool:
        changed = False
        for incident in await self.store.list_incidents(limit=100_000):
            seen = f"{incident.id}#{incident.attempt}"
            if seen in self._seen or incident.plan is None or not incident.plan.deferred:
                continue
            if incident.folded_into is not None or incident.status == "open":
                continue
            changed |= await self._queue(incident)
            self._seen.add(seen)
        return changed

    async def _queue(self, incident: Incident) -> bool:
        assert incident.plan is not None
        now = self.clock()
        if "suspected_bad_hardware" in incident.findings:
            why = "no automatic repair: the part is suspected bad, a person decides (diagnostics or replacement)"
            await self.store.update(
                incident.id, partial(note_once, what="repair not queued", detail=why, at=now)
            )
            return True
        changed = False
        for invocation in incident.plan.deferred:
            node = invocation.params.get("node")
            if invocation.runbook not in (RESET, REBOOT) or not isinstance(node, str):
                continue
            gpu = invocation.params.get("gpu")
            reboot = invocation.runbook == REBOOT
            existing = await self.docs.get(repair_key(node))
            if existing is not None and incident.id in existing.incidents:
                continue

            def add(r: Repair, gpu: Any = gpu, reboot: bool = reboot, node: str = node) -> None:
                if incident.id in r.incidents:
                    return
                if not r.active:  # repaired before: this is a new repair of the node
                    r.attempt += 1
                    r.status, r.gpus, r.reboot, r.incidents, r.runs = "queued", [], False, [], []
                    r.owner = r.lease_until = r.started_at = r.finished_at = r.returned_to = None
                    r.queued_at = now
                r.incidents.append(incident.id)
                r.cluster = incident.cluster
                r.dry_run = r.dry_run or incident.observe_only
                r.reboot = r.reboot or reboot
                if isinstance(gpu, int) and gpu not in r.gpus:
                    r.gpus.append(gpu)
                r.note("queued", f"{incident.id}: {_what(REBOOT if reboot else RESET, node, gpu)}", at=now)

            await self.docs.update(repair_key(node), add, default=partial(_new_repair, node))
            detail = f"{_what(invocation.runbook, node, gpu)} once nothing runs on {node} (list_repairs)"
            await self.store.update(
                incident.id, partial(note_once, what="repair queued", detail=detail, at=now)
            )
            changed = True
        return changed

    # -- running ----------------------------------------------------------------------------------

    async def _advance(self, repair: Repair) -> bool:
        now = self.clock()
        mine = repair.owner == self.owner
        lapsed = repair.lease_until is None or repair.lease_until <= now
        if repair.status != "queued" and not mine and not lapsed:
            return False  # another replica runs it
        if repair.status == "queued":
            why = await not_ready(repair, self.store, self.tools)
            if why is not None:
                if why == repair.waiting_for:
                    return False
                await self._edit(repair.node, partial(_waiting, why=why, at=now))
                return True
        repair = await self._claim(repair)
        for _ in range(MAX_RUNS):
            step = self._next(repair)
            if step is None:
                return True
            state = await self._run(repair, step)
            repair = await self._record(repair, step, state)
            if state.status in ("waiting", "awaiting_approval") or not repair.active:
                return True
        await self._finish(repair, "failed", f"the repair chain ran {MAX_RUNS} runbooks without ending")
        return True

    async def _claim(self, repair: Repair) -> Repair:
        """Take (or renew) the lease compare-and-set; ``Lost`` when another replica holds it."""
        now = self.clock()
        started = repair.status == "queued"

        def claim(r: Repair) -> None:
            held = r.owner is not None and r.owner != self.owner and r.lease_until is not None
            if held and r.lease_until is not None and r.lease_until > now and r.status != "queued":
                raise Lost(r.key)
            if not r.active:
                raise Lost(r.key)
            if r.owner not in (None, self.owner):
                r.note("taken over", f"{self.owner} takes over from {r.owner} (its lease lapsed)", at=now)
            if r.status == "queued":
                r.status, r.started_at, r.waiting_for = "running", now, None
                r.note("started", f"{self.owner}: {repair.node} is idle", at=now)
            r.owner, r.lease_until = self.owner, now + timedelta(seconds=self.lease_s)

        try:
            repair = await self._edit(repair.node, claim)
        except DocumentConflict as exc:
            raise Lost(repair.key) from exc
        if started:
            what = "dry run (observe-only)" if repair.dry_run else "started"
            await self._note_incidents(
                repair, f"repair {what}", f"{repair.node} is out of work: {_plan_text(repair)}"
            )
        return repair

    def _next(self, repair: Repair) -> RepairRun | None:
        """The run to go on with: the last one if unfinished, else the next of the chain."""
        if repair.runs and repair.runs[-1].status not in ("succeeded", "dry_run"):
            last = repair.runs[-1]
            return last if last.status in ("pending", "running", "waiting", "awaiting_approval") else None
        done = {(r.runbook, r.params.get("gpu")) for r in repair.runs if r.status in ("succeeded", "dry_run")}
        if (RETURN, None) in done or (ESCALATE, None) in done:
            return None
        rebooted = (REBOOT, None) in done
        if not rebooted:
            for invocation in repair.first_runbook():
                if (invocation.runbook, invocation.params.get("gpu")) not in done:
                    return self._new_run(repair, invocation.runbook, invocation.params)
        if repair.dry_run:
            return None
        return self._new_run(repair, RETURN, {"node": repair.node, "reason": repair.reason() + ": repaired"})

    def _new_run(self, repair: Repair, runbook: str, params: dict[str, Any]) -> RepairRun:
        run_id = f"repair/{repair.node}/{repair.attempt}/{len(repair.runs) + 1}-{runbook}"
        return RepairRun(run_id=run_id, runbook=runbook, params=params)

    async def _run(self, repair: Repair, step: RepairRun) -> RunState:
        incident = await self.store.get_incident(repair.incidents[0]) if repair.incidents else None
        context = run_context(incident) if incident is not None else {}
        # The repair's mutations are its own: keyed by the repair's run (node, attempt, step), not by
        # the fault, so a second attempt at the same runbook executes instead of replaying the first.
        context.pop("fault", None)
        params = dict(step.params)
        if step.runbook == ESCALATE and incident is not None:
            params.setdefault("evidence", evidence_of(incident))
        return await self.engine.run(
            step.runbook, params, run_id=step.run_id, context=context, dry_run=repair.dry_run
        )

    async def _record(self, repair: Repair, step: RepairRun, state: RunState) -> Repair:
        now = self.clock()
        fallback = self.engine.fallback_for(state)
        finished = state.status in ("succeeded", "dry_run")

        def apply(r: Repair) -> None:
            if r.owner != self.owner:
                raise Lost(r.key)
            found = next((x for x in r.runs if x.run_id == step.run_id), None)
            if found is None:
                found = step.model_copy()
                r.runs.append(found)
            changed = found.status != state.status
            found.status, found.error = state.status, state.error
            if changed:
                r.note(f"{step.runbook} {state.status}", state.error or args_text(step.params), at=now)
            if fallback is not None and not finished:
                name, params = fallback
                r.reboot = r.reboot or name == REBOOT
                r.runs.append(self._new_run(r, name, params))
                r.note("fallback", f"{step.runbook} {state.status}: falling back to {name}", at=now)
            r.lease_until = now + timedelta(seconds=self.lease_s)

        repair = await self._edit(repair.node, apply)
        await self._record_actions(repair, state)
        if finished and step.runbook == ESCALATE:
            return await self._finish(
                repair, "escalated", "a hardware ticket is open; the node stays out of service"
            )
        if finished and step.runbook == RETURN:
            return await self._returned(repair)
        if finished and repair.dry_run and self._next(repair) is None:
            return await self._finish(
                repair, "dry_run", "observe-only: the repair was planned and checked, nothing changed"
            )
        if finished and step.runbook in (RESET, REBOOT):
            await self._note_incidents(
                repair, "repaired", f"{step.runbook} on {repair.node} verified: GPUs healthy again"
            )
        if state.status in ("denied",) and fallback is None:
            return await self._finish(
                repair, "refused", f"the gate refused {step.runbook}: {state.error or ''}"
            )
        if (
            not finished
            and state.status not in ("waiting", "awaiting_approval", "running")
            and fallback is None
        ):
            return await self._finish(repair, "failed", f"{step.runbook} {state.status}: {state.error or ''}")
        return repair

    async def _returned(self, repair: Repair) -> Repair:
        status = await self.tools.call("service_status", {"node": repair.node})
        spare = bool(status.ok and isinstance(status.structured, dict) and status.structured.get("spare"))
        where = "the spare pool" if spare else "service"

        def apply(r: Repair) -> None:
            r.returned_to = "spare_pool" if spare else "service"

        repair = await self._edit(repair.node, apply)
        return await self._finish(repair, "returned", f"{repair.node} is back in {where}")

    async def _finish(self, repair: Repair, status: RepairStatus, why: str) -> Repair:
        now = self.clock()

        def apply(r: Repair) -> None:
            r.status = status
            r.finished_at, r.owner, r.lease_until = now, None, None
            r.note(status, why, at=now)

        repair = await self._edit(repair.node, apply)
        label = {"returned": "repair done", "escalated": "repair escalated"}.get(status, f"repair {status}")
        await self._note_incidents(repair, label, why)
        return repair

    # -- writing ----------------------------------------------------------------------------------

    async def _edit(self, node: str, change: Callable[[Repair], None]) -> Repair:
        return await self.docs.update(repair_key(node), change)

    async def _note_incidents(self, repair: Repair, what: str, detail: str) -> None:
        now = self.clock()
        for incident_id in repair.incidents:
            await self.store.update(incident_id, partial(note_once, what=what, detail=detail, at=now))

    async def _record_actions(self, repair: Repair, state: RunState) -> None:
        """The run's mutating steps on the incidents: actions with their decisions, and the timeline."""
        now = self.clock()

        def apply(incident: Incident) -> None:
            for step, result in add_run_actions(incident, state, at=now):
                done = (
                    "would run (dry run)"
                    if result.get("dry_run")
                    else "done"
                    if step.status == "done"
                    else "failed"
                )
                incident.note(f"repair: {step.tool} {done}", step.error or args_text(step.arguments), at=now)

        for incident_id in repair.incidents:
            await self.store.update(incident_id, apply)


def _new_repair(node: str) -> Repair:
    return Repair(key=repair_key(node), node=node)


def _progress(r: Repair) -> tuple[object, ...]:
    """What a round of the worker may change, short of renewing its lease."""
    return (r.status, r.waiting_for, r.owner, tuple((x.run_id, x.status) for x in r.runs))


def _waiting(r: Repair, *, why: str, at: datetime) -> None:
    r.waiting_for = why
    r.note("waiting", why, at=at)


def _what(runbook: str, node: str, gpu: Any) -> str:
    return f"reboot {node}" if runbook == REBOOT else f"reset GPU {gpu} of {node}"


def _plan_text(repair: Repair) -> str:
    steps = [_what(i.runbook, repair.node, i.params.get("gpu")) for i in repair.first_runbook()]
    return ", then ".join(steps) + ", verify, return it"
