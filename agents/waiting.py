"""What mitigation waits for, and who watches it: runs parked for a person's approval, incidents
held by the circuit breaker, runs waiting for time to pass, confirmations — all read from the
incident store (``pending_approvals``, ``held_by``, ``waiting_run``, ``confirming``), none kept in
the process. Each agent replica watches the incidents it owns (``agents.ownership``); ``recover``
takes over the ones whose owner's lease expired. The ``Mitigator`` (``agents.mitigation``) is a
``Waits``; this module holds the half of it that waits and watches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any

from agents.incident_edits import (
    args_text,
    escalate,
    needs_owner,
    release_to_people,
    retry_after_reset,
)
from agents.ownership import Ownership
from agents.store import IncidentStore
from contracts.client import ToolClient
from events.backoff import Backoff, is_transient
from events.incident import ApprovalRef, Incident
from events.liveness import LoopProbe
from runbooks.engine import RunbookEngine
from runbooks.state import RunState

log = logging.getLogger(__name__)

DECIDED = ["approved", "rejected", "expired", "used"]


class Waits(ABC):
    store: IncidentStore
    tools: ToolClient
    engine: RunbookEngine
    clock: Callable[[], datetime]
    start: Callable[[str], None]
    ownership: Ownership
    sweep_every_s: float
    taken_over: int

    @abstractmethod
    def fence(self, incident_id: str) -> int: ...

    @abstractmethod
    def record_run(self, incident: Incident, *, state: RunState) -> None: ...

    @abstractmethod
    async def mitigate(self, incident_id: str) -> Incident: ...

    # -- approvals ------------------------------------------------------------------------------

    async def _park(self, incident: Incident, state: RunState) -> Incident:
        step = next((s for s in state.steps if s.status == "awaiting_approval"), None)
        approval_id = state.approval_id
        if step is None or approval_id is None:
            why = f"runbook {state.runbook} waits for an approval the server did not name: {state.error}"
            return await self.store.update(incident.id, partial(escalate, why=why, now=self.clock()))
        request = (await self._approvals(["pending"])).get(approval_id, {})
        reasons = request.get("reasons") or [step.error or "the policy asks a person"]
        ref = ApprovalRef(
            id=approval_id,
            action=step.tool,
            target=str(request.get("target") or args_text(step.arguments)),
            summary=str(reasons[0]),
            run_id=state.run_id,
            step=step.id,
            requested_at=request.get("requested_at"),
            expires_at=request.get("expires_at"),
        )
        now = self.clock()

        def park(inc: Incident) -> None:
            inc.pending_approvals = [r for r in inc.pending_approvals if r.id != approval_id] + [ref]
            inc.status = "awaiting_approval"
            inc.note(
                "waiting for approval",
                f"{approval_id}: {ref.action} on {ref.target} — {ref.summary}. "
                f"`aiops approve {approval_id}` or `aiops reject {approval_id}`",
                at=now,
            )

        return await self.store.update(incident.id, park)

    async def mine(self) -> list[Incident]:
        """The incidents this replica owns, as stored now."""
        found = await asyncio.gather(*(self.store.get_incident(i) for i in list(self.ownership.owned)))
        return [i for i in found if i is not None]

    async def check_parked(self, mine: list[Incident] | None = None) -> None:
        """Resume or abandon the runs whose approval a person decided (or that expired)."""
        mine = await self.mine() if mine is None else mine
        parked = [
            (ref.id, i.id) for i in mine if i.status == "awaiting_approval" for ref in i.pending_approvals
        ]
        if not parked:
            return
        decided = await self._approvals(DECIDED)
        for approval_id, incident_id in parked:
            request = decided.get(approval_id)
            if request is None:
                continue
            if request["status"] in ("approved", "used"):
                await self._approved(incident_id, request)
            else:
                await self._refused(incident_id, request)

    async def _approved(self, incident_id: str, request: dict[str, Any]) -> None:
        now, who = self.clock(), request.get("decided_by") or "a person"
        comment = f": {request['comment']}" if request.get("comment") else ""

        def resume(inc: Incident) -> None:
            if not any(r.id == request["id"] for r in inc.pending_approvals):
                return  # told already
            inc.pending_approvals = [r for r in inc.pending_approvals if r.id != request["id"]]
            inc.status = "mitigating"
            inc.note("approved", f"{request['id']} approved by {who}{comment}; the run resumes", at=now)

        await self.store.update(incident_id, resume)
        self.start(incident_id)

    async def _refused(self, incident_id: str, request: dict[str, Any]) -> None:
        incident = await self.store.get_incident(incident_id)
        if incident is None:
            return
        ref = next((r for r in incident.pending_approvals if r.id == request["id"]), None)
        if request["status"] == "rejected":
            comment = f": {request['comment']}" if request.get("comment") else ""
            why = f"approval {request['id']} rejected by {request.get('decided_by')}{comment}"
        else:
            why = f"approval {request['id']} expired unanswered at {request.get('expires_at')}"
        if ref is None:
            return  # told already
        state = await self.engine.abandon(ref.run_id, why, fence=self.fence(incident_id))
        now = self.clock()

        def abandon(inc: Incident) -> None:
            if state is not None:
                self.record_run(inc, state=state)
            inc.pending_approvals = [r for r in inc.pending_approvals if r.id != request["id"]]
            escalate(inc, why=f"{why}; the run is abandoned, nothing more of it runs", now=now)

        await self.store.update(incident_id, abandon)

    # -- breaker backlog ------------------------------------------------------------------------

    async def check_backlog(self, mine: list[Incident] | None = None) -> None:
        """Once a person reset the breaker, retry the held incidents or release them to people."""
        mine = await self.mine() if mine is None else mine
        held = [i for i in mine if i.held_by == "breaker"]
        if not held:
            return
        status = await self._safety()
        breaker = status.get("breaker") if status else None
        if not isinstance(breaker, dict) or breaker.get("open", True):
            return
        backlog, who = breaker.get("backlog") or "retry", breaker.get("reset_by") or "a person"
        for incident in sorted(held, key=lambda i: i.opened_at):
            now = self.clock()
            if backlog == "retry":
                await self.store.update(incident.id, partial(retry_after_reset, who=who, now=now))
                await self.mitigate(incident.id)
            else:
                await self.store.update(incident.id, partial(release_to_people, who=who, now=now))

    # -- the watch loop -------------------------------------------------------------------------

    async def recover(self) -> int:
        """Take over what needs an owner and has none (at start, and every ``sweep_every_s``):
        incidents planning or running, parked for a person, held by the breaker, with a waiting run
        or a confirmation — unowned, or their owner's lease expired (it died). Runs resume from
        their persisted steps. Returns how many incidents it took."""
        taken = 0
        for incident in await self.store.list_incidents(limit=100_000):
            if not needs_owner(incident):
                continue
            if incident.id not in self.ownership.owned:
                if await self.ownership.take(incident.id) is None:
                    continue  # a live replica owns it
                taken += 1
                log.info("took over incident %s (%s): no live owner", incident.id, incident.status)
            # Ours: started again if its mitigation is not running (it gave up on a NATS outage).
            if incident.status in ("open", "mitigating") or incident.waiting_run or incident.confirming:
                self.start(incident.id)
        self.taken_over += taken
        return taken

    async def poke(self, mine: list[Incident] | None = None) -> None:
        """Let every waiting run of this replica's incidents poll again (the watch loop does, and
        ``drain``: a simulation that moves its clock between calls sees its runs progress with it)."""
        mine = await self.mine() if mine is None else mine
        for incident in sorted(mine, key=lambda i: i.id):
            if incident.waiting_run is not None or incident.confirming:
                self.start(incident.id)

    async def watch(self, stop: asyncio.Event, every_s: float = 1.0, probe: LoopProbe | None = None) -> None:
        """Follow approvals, the breaker and waiting runs until ``stop``. A failed round (NATS or
        the MCP server unavailable) is retried after a growing backoff; ``probe`` hears each round."""
        backoff = Backoff(every_s, max(10.0, every_s))
        swept_at: float | None = None
        while not stop.is_set():
            try:
                if swept_at is None or time.monotonic() - swept_at >= self.sweep_every_s:
                    await self.recover()
                    swept_at = time.monotonic()
                mine = await self.mine()
                await self.poke(mine)
                await self.check_parked(mine)
                await self.check_backlog(mine)
                if probe is not None:
                    probe.ok()
                backoff.reset()
                wait = min(every_s, self.sweep_every_s)
            except Exception as exc:
                if probe is not None:
                    probe.error(exc)
                log.warning("checking approvals and the breaker failed (%r); trying again", exc,
                            exc_info=not is_transient(exc))  # fmt: skip
                wait = backoff.delay()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)

    # -- server facts ---------------------------------------------------------------------------

    async def _approvals(self, statuses: list[str]) -> dict[str, dict[str, Any]]:
        listed = await self.tools.call("list_approvals", {"status": statuses, "limit": 500})
        if not listed.ok or not isinstance(listed.structured, dict):
            return {}
        return {a["id"]: a for a in listed.structured.get("approvals", [])}

    async def _safety(self) -> dict[str, Any] | None:
        status = await self.tools.call("safety_status", {})
        return status.structured if status.ok and isinstance(status.structured, dict) else None
