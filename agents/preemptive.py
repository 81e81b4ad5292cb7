"""Pre-emptive removal of failing parts: a GPU whose signals predict its failure leaves its job
before the crash, at a moment that costs the job little.

The rule (``skills.precursors``) reads an incident's findings: corrected-ECC errors arriving fast,
retired pages past DCGM's soft limit, pages pending retirement. Triage judges those a trend to watch
(no action); this loop (``PreemptiveRemoval.tick``, every round of ``watch``) takes them up:

1. **flag**: one ``Preemption`` per node, created compare-and-set in the ``preemptions`` KV bucket
   (so N agent replicas flag it once) and noted on the incident's timeline;
2. **wait for a cheap moment**: the job's next stop (it is ``stalled`` for another reason: a spare
   swap now joins the restart that is coming anyway), or — when no stop came within
   ``drain_after_s`` — the job's next checkpoint boundary (its last checkpoint younger than
   ``boundary_s``: a restart then discards almost nothing). A GPU with no job: its node is cordoned
   so no job lands on it;
3. **swap and restart** through the MCP tools (``swap_spare`` then ``restart_from_checkpoint``), with
   idempotency keys of the flag, so every call is policy-checked like any other mutation: the spare
   reserve, the GPU-hours a restart would discard (``max_gpu_hours_at_risk``: a drain off the boundary
   needs a person's approval), the breaker. A call that waits for approval is repeated each round and
   goes ahead once approved; a denied one ends the flag (``refused``) and says why on the incident.

The fleet goodput study models this policy (``evals/goodput``, lever ``precursors_agent``) with the
share of faults that warn (recall) and the false flags per catch (precision), false drains counted
as cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from pydantic import AwareDatetime, BaseModel

from contracts.client import ToolClient, ToolResult
from events import subjects
from events.documents import DocumentExists, Documents
from events.incident import Incident, IncidentStatus
from skills.precursors import precursor_of

log = logging.getLogger(__name__)

PreemptionState = Literal["waiting", "awaiting_approval", "swapped", "cordoned", "refused"]
OPEN_STATES: frozenset[PreemptionState] = frozenset({"waiting", "awaiting_approval"})
DRAIN_AFTER_S = 6 * 3600.0
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
    return Preemption(
        node=node,
        gpu=int(index),
        incident_id=incident.id,
        flagged_at=incident.opened_at,
        why=f"{precursor.why}: predicts {precursor.predicts}",
    )


class PreemptiveRemoval:
    def __init__(
        self,
        tools: ToolClient,
        flags: Documents[Preemption],
        incidents: IncidentBook,
        *,
        drain_after_s: float = DRAIN_AFTER_S,
        boundary_s: float | None = None,
    ) -> None:
        self.tools = tools
        self.flags = flags
        self.incidents = incidents
        self.drain_after_s = drain_after_s
        self.boundary_s = boundary_s
        self.swaps = 0

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
                continue
            new += 1
            plan = (
                f"pre-emptive removal of {flag.node}: {flag.why}. Its job swaps it for a spare at its next "
                f"stop, or at a checkpoint boundary after {self.drain_after_s / 3600:g} h"
            )
            await self._note(flag, "pre-emptive removal planned", plan)
        return new

    async def tick(self) -> None:
        """One round: flag what is new, then move every open flag on."""
        await self.scan()
        for flag in await self.flags.values():
            if flag.state in OPEN_STATES:
                await self.advance(flag)

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
        return age is not None and float(age) <= boundary

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
            await self.incidents.update(flag.incident_id, lambda inc: inc.note(what, detail))

    async def watch(self, stop: asyncio.Event, every_s: float = 1.0) -> None:
        """``tick`` every ``every_s`` until ``stop``; a failed round is logged and retried."""
        while not stop.is_set():
            try:
                await self.tick()
            except Exception:
                log.exception("pre-emptive removal round failed; retried")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every_s)


def _now_of(ckpt: dict[str, Any]) -> datetime | None:
    """The backend's clock, from a checkpoint status (its last checkpoint and that checkpoint's age)."""
    at, age = ckpt.get("last_checkpoint_at"), ckpt.get("checkpoint_age_s")
    if at is None or age is None:
        return None
    return datetime.fromisoformat(str(at)) + timedelta(seconds=float(age))
