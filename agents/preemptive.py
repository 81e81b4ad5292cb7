"""Pre-emptive removal of failing parts: a GPU whose signals predict its failure leaves its job
before the crash, at a moment that costs the job little.

The rule (``skills.precursors``) reads an incident's findings: corrected-ECC errors arriving fast,
retired pages past DCGM's soft limit, pages pending retirement, thermal slowdown recurring on the GPU
(DCGM's clock-event reasons). Triage judges those a trend to watch (no action). A repeated offender
(the lemon rule) is one too when triage did not take its GPU out: the plan that tripped the rule
isolates the GPU before it restarts a job (``agents.fault_rules.isolate_before_restart``), but a
lemon whose incident restarts nothing (an idle GPU, a job that kept running, a trend) would go back
to work. This loop (``PreemptiveRemoval.tick``, every round of ``watch``) takes them up:

1. **flag**: one ``Preemption`` per node, created compare-and-set in the ``preemptions`` KV bucket
   (so N agent replicas flag it once) and noted on the incident's timeline;
2. **wait for a cheap moment**: the job's next stop (it is ``stalled`` for another reason: a spare
   swap now joins the restart that is coming anyway), or — when no stop came within
   ``drain_after_s`` — the job's next checkpoint boundary (its last checkpoint younger than
   ``boundary_s``: a restart then discards almost nothing; and at least ``RESUMED_S`` old, so the
   ranks have trained on after the write: a restart at the very end of a write looks to the hang
   detector like ranks stuck since the write began). A GPU with no job: its node is cordoned so no
   job lands on it;
3. **swap and restart** through the MCP tools (``swap_spare`` then ``restart_from_checkpoint``), with
   idempotency keys of the flag, so every call is policy-checked like any other mutation: the spare
   reserve, the GPU-hours a restart would discard (``max_gpu_hours_at_risk``: a drain off the boundary
   needs a person's approval), the breaker. A call that waits for approval is repeated each round and
   goes ahead once approved; a denied one ends the flag (``refused``) and says why on the incident;
4. **the way back**: a node swapped out or cordoned is handed to the deferred repair flow
   (``agents/repairs.py``): a ``reset-gpu`` of the flagged GPU joins the incident's ``Plan.deferred``,
   so once the node is out of work the repair worker resets it (falling back to a reboot, then a
   ticket), verifies it and returns it to service or the spare pool. A suspected bad part (a lemon)
   is not repaired automatically: a person has it (the ``escalate`` ticket of its incident).

A node flagged once is not flagged again by the same incident; a later incident with a precursor on
it flags it afresh when the earlier removal was refused or its node went to the repair (which may
have returned it). A node left out for a person (a lemon) is not flagged again while its flag lives
(7 days): it is out of service already.

The fleet goodput study models this policy (``evals/goodput``, lever ``precursors_agent``) with the
share of faults that warn (recall) and the false flags per catch (precision), false drains counted
as cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from pydantic import AwareDatetime, BaseModel

from contracts.client import ToolClient, ToolResult
from events import subjects
from events.documents import DocumentExists, Documents
from events.incident import Incident, IncidentStatus, RunbookInvocation
from events.models import utcnow
from skills.precursors import LEMON, precursor_of

log = logging.getLogger(__name__)

PreemptionState = Literal["waiting", "awaiting_approval", "swapped", "cordoned", "refused"]
OPEN_STATES: frozenset[PreemptionState] = frozenset({"waiting", "awaiting_approval"})
REMOVED_STATES: frozenset[PreemptionState] = frozenset({"swapped", "cordoned"})
RESET, REBOOT, ISOLATE = "reset-gpu", "drain-and-reboot-node", "isolate-gpu"
DRAIN_AFTER_S = 6 * 3600.0
RESUMED_S = 30.0
"""A checkpoint boundary starts this long after the write: three heartbeats (events.detectors.hang)."""
SCAN_LIMIT = 200


class Preemption(BaseModel):
    """A node flagged for pre-emptive removal, and where its removal stands."""

    node: str
    gpu: int
    incident_id: str
    flagged_at: AwareDatetime
    why: str
    state: PreemptionState = "waiting"
    job: str | None = None
    how: str = ""
    approval_id: str | None = None
    detail: str = ""
    repair: Literal["", "queued", "not_queued"] = ""
    """Whether the removed node was handed to the deferred repair flow (its way back)."""


class IncidentBook(Protocol):
    async def list_incidents(
        self, statuses: list[IncidentStatus] | None = None, limit: int = 50
    ) -> list[Incident]: ...

    async def update(self, incident_id: str, change: Any) -> Incident: ...


def flag_of(incident: Incident) -> Preemption | None:
    """The pre-emption an incident calls for, or None."""
    precursor = precursor_of(incident.findings)
    if precursor is None or not incident.affected_gpus:
        return None
    node, _, index = incident.affected_gpus[0].rpartition("/")
    if not node or not index.isdigit():
        return None
    if precursor.findings == (LEMON,) and not _lemon_left_in_service(incident, node, int(index)):
        return None
    return Preemption(
        node=node,
        gpu=int(index),
        incident_id=incident.id,
        flagged_at=incident.opened_at,
        why=f"{precursor.why}: predicts {precursor.predicts}",
    )


def _lemon_left_in_service(incident: Incident, node: str, gpu: int) -> bool:
    """Whether a repeated offender's incident, once planned, leaves its GPU able to take work: its
    plan neither isolates the GPU nor drains its node (a reset or reboot cordons it, and the repair
    flow never returns a suspected part). A swap alone takes the node out of one job, not out of
    service. An incident folded into another is that one's to handle."""
    if incident.plan is None or incident.status == "open" or incident.folded_into is not None:
        return False  # not decided yet (the next round looks again), or another incident has it
    for action in incident.plan.actions:
        p = action.params
        if action.runbook == ISOLATE and p.get("node") == node and p.get("gpu") == gpu:
            return False
        if action.runbook in (RESET, REBOOT) and p.get("node") == node:
            return False
    return True


class _NotPlanned(Exception):
    """The incident has no plan yet to queue a repair with."""


class PreemptiveRemoval:
    def __init__(
        self,
        tools: ToolClient,
        flags: Documents[Preemption],
        incidents: IncidentBook,
        *,
        drain_after_s: float = DRAIN_AFTER_S,
        boundary_s: float | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.tools = tools
        self.clock = clock
        self.flags = flags
        self.incidents = incidents
        self.drain_after_s = drain_after_s
        self.boundary_s = boundary_s
        self.swaps = 0
        self._parked = asyncio.Event()

    async def scan(self) -> int:
        """Flag the nodes of recent incidents with a precursor; returns how many were new."""
        new = 0
        for incident in await self.incidents.list_incidents(None, SCAN_LIMIT):
            flag = flag_of(incident)
            if flag is None:
                continue
            try:
                await self.flags.create(subjects.token(flag.node), flag)
            except DocumentExists:
                if not await self._renew(flag):
                    continue
            new += 1
            plan = (
                f"pre-emptive removal of {flag.node}: {flag.why}. Its job swaps it for a spare at its next "
                f"stop, or at a checkpoint boundary after {self.drain_after_s / 3600:g} h"
            )
            await self._note(flag, "pre-emptive removal planned", plan)
        return new

    async def _renew(self, flag: Preemption) -> bool:
        """A later incident flags a node whose earlier removal is over (compare-and-set: one
        replica does it); True when ``flag`` replaced the earlier one."""
        key = subjects.token(flag.node)
        earlier = await self.flags.get(key)
        if (
            earlier is None
            or earlier.incident_id == flag.incident_id
            or earlier.state in OPEN_STATES
            or flag.flagged_at <= earlier.flagged_at
        ):
            return False
        if earlier.state in REMOVED_STATES and earlier.repair != "queued":
            return False  # still out (a lemon stays with a person; the repair was never queued)

        def renew(doc: Preemption) -> None:
            if doc.incident_id != earlier.incident_id:
                raise DocumentExists(key)  # another replica renewed it first
            for name in Preemption.model_fields:
                setattr(doc, name, getattr(flag, name))

        try:
            await self.flags.update(key, renew)
        except DocumentExists:
            return False
        return True

    async def tick(self) -> bool:
        """One round: flag what is new, move every open flag on, hand removed nodes to repair.
        True when anything changed."""
        changed = await self.scan() > 0
        for flag in await self.flags.values():
            before = (flag.state, flag.repair)
            if flag.state in OPEN_STATES:
                await self.advance(flag)
            if flag.state in REMOVED_STATES and not flag.repair:
                await self.hand_to_repair(flag)
            changed |= (flag.state, flag.repair) != before
        return changed

    async def hand_to_repair(self, flag: Preemption) -> None:
        """The removed node's way back: a reset of the flagged GPU joins the incident's deferred
        repair (``Plan.deferred``), which the repair worker runs once the node is out of work:
        reset (or reboot), verify, return to service or the spare pool; a ticket if it fails."""
        reset = RunbookInvocation(runbook=RESET, params={"node": flag.node, "gpu": flag.gpu})
        outcome: list[Literal["queued", "not_queued"]] = []
        now = self.clock()

        def add(incident: Incident) -> None:
            outcome.clear()
            if incident.plan is None:
                raise _NotPlanned(incident.id)
            if LEMON in incident.findings:
                outcome.append("not_queued")
                incident.note(
                    "pre-emptive removal: no automatic repair",
                    f"{flag.node} stays out: GPU {flag.gpu} is suspected bad hardware, a person decides",
                    at=now,
                )
                return
            outcome.append("queued")
            queued = any(
                d.runbook in (RESET, REBOOT) and d.params.get("node") == flag.node
                for d in incident.plan.deferred
            )
            if not queued:
                incident.plan.deferred.append(reset)
            incident.note(
                "pre-emptive removal: repair queued",
                f"{flag.node} ({flag.state}) is handed to the deferred repair: reset GPU {flag.gpu} once "
                "it is out of work, verify, return it to service or the spare pool (list_repairs)",
                at=now,
            )

        try:
            await self.incidents.update(flag.incident_id, add)
        except _NotPlanned:
            return  # the next round tries again
        except LookupError:
            outcome[:] = ["not_queued"]
        await self._set(flag, repair=outcome[0] if outcome else "not_queued")

    async def advance(self, flag: Preemption) -> None:
        where = await self._call("job_for_gpu", {"node": flag.node, "gpu": flag.gpu})
        job = ((where.structured or {}).get("job") or {}) if where.ok else {}
        if not job:
            if where.ok:
                await self._act(
                    flag, "cordon_node", {"node": flag.node}, "cordoned", "no job on it: cordoned"
                )
            return
        name = str(job["name"])
        status = await self._call("checkpoint_status", {"job": name})
        if not status.ok or not status.structured:
            return
        ckpt = status.structured
        now = _now_of(ckpt)
        if ckpt["state"] == "stalled":
            moment = f"{name} stopped for another reason: swapped at that stop"
        elif ckpt["state"] == "running" and now is not None and self._due(flag, now, ckpt):
            moment = f"no stop of {name} within {self.drain_after_s / 3600:g} h: drained at its checkpoint boundary"
        else:
            return
        swap = {"job": name, "node": flag.node}
        if not await self._act(flag, "swap_spare", swap, None, moment):
            return
        restart = await self._act(flag, "restart_from_checkpoint", {"job": name}, "swapped", moment)
        if restart:
            self.swaps += 1

    def _due(self, flag: Preemption, now: datetime, ckpt: dict[str, Any]) -> bool:
        if now - flag.flagged_at < timedelta(seconds=self.drain_after_s):
            return False
        age = ckpt.get("checkpoint_age_s")
        boundary = (
            self.boundary_s
            if self.boundary_s is not None
            else max(60.0, 0.1 * float(ckpt["checkpoint_interval_s"]))
        )
        return age is not None and RESUMED_S <= float(age) <= max(boundary, RESUMED_S)

    async def _act(
        self, flag: Preemption, tool: str, args: dict[str, Any], done: PreemptionState | None, how: str
    ) -> bool:
        """One guarded call for the flag; True when it went ahead. Records the outcome on the flag."""
        key = f"preempt/{subjects.token(flag.node)}/{flag.incident_id}/{tool}"
        reason = f"pre-emptive removal ({flag.why})"[:500]
        result = await self._call(
            tool, {**args, "reason": reason, "idempotency_key": key, "incident_id": flag.incident_id}
        )
        refusal = result.refusal
        if result.ok:
            if done is not None:
                await self._set(flag, state=done, how=how, job=args.get("job"), detail=result.text[:500])
                await self._note(flag, "pre-emptive removal done", how)
            return True
        if refusal is not None and refusal.kind == "approval_required":
            if flag.state != "awaiting_approval":
                await self._set(flag, state="awaiting_approval", approval_id=refusal.approval_id, how=how)
                await self._note(
                    flag, "pre-emptive removal awaits approval", f"{tool}: {'; '.join(refusal.reasons)}"
                )
            return False
        if refusal is not None and refusal.kind == "in_flight":
            return False
        why = "; ".join(refusal.reasons) if refusal is not None else result.text
        await self._set(flag, state="refused", how=how, detail=f"{tool}: {why}"[:500])
        await self._note(flag, "pre-emptive removal refused", f"{tool}: {why}")
        return False

    async def _call(self, tool: str, args: dict[str, Any]) -> ToolResult:
        return await self.tools.call(tool, args)

    async def _set(self, flag: Preemption, **changes: Any) -> None:
        def change(doc: Preemption) -> None:
            for name, value in changes.items():
                setattr(doc, name, value)

        updated = await self.flags.update(subjects.token(flag.node), change)
        for name in changes:
            setattr(flag, name, getattr(updated, name))

    async def _note(self, flag: Preemption, what: str, detail: str) -> None:
        with contextlib.suppress(LookupError):
            await self.incidents.update(flag.incident_id, lambda inc: inc.note(what, detail, at=self.clock()))

    def park(self) -> None:
        """Stop the loop's own rounds: the caller ticks (the scenario runner, in step with its clock)."""
        self._parked.set()

    async def watch(self, stop: asyncio.Event, every_s: float = 1.0) -> None:
        """``tick`` every ``every_s`` until ``stop`` (or ``park``); a failed round is logged and retried."""
        while not stop.is_set() and not self._parked.is_set():
            try:
                await self.tick()
            except Exception:
                log.exception("pre-emptive removal round failed; retried")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every_s)
        await stop.wait()  # parked: the caller ticks; the loop ends with the platform


def _now_of(ckpt: dict[str, Any]) -> datetime | None:
    """The backend's clock, from a checkpoint status (its last checkpoint and that checkpoint's age)."""
    at, age = ckpt.get("last_checkpoint_at"), ckpt.get("checkpoint_age_s")
    if at is None or age is None:
        return None
    return datetime.fromisoformat(str(at)) + timedelta(seconds=float(age))
