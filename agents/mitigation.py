"""Mitigation: from an incident's plan to runbook runs, and what happens when one cannot finish.

- A plan's runbooks run in order through the engine (each step an MCP call through the gate). A
  run that fails or does not verify falls back to its runbook's fallback (reset → reboot →
  escalate); a run that ends ``succeeded`` lets the next one go.
- Approval: a run the policy sends to a person parks; the incident waits in ``awaiting_approval``
  with the approval's id, reasons and expiry. ``watch`` notices the decision (``list_approvals``):
  approved, the incident resumes and the parked call goes ahead; rejected or expired, the run is
  abandoned and the incident goes to people — all on its timeline (the decision is in the audit).
- Breaker: a run the open circuit breaker stopped leaves the incident ``escalated`` and held
  (``held_by = "breaker"``). After a person resets the breaker, ``watch`` handles the backlog as
  they chose: ``retry`` re-plans the held incidents from current facts, oldest first, one at a
  time, through the same gate (so a storm that goes on trips the breaker again); ``escalate``
  releases them to people.
- Confirmation: checks that need time to hold (the job trains at its baseline step time again)
  follow a succeeded run without holding the incident, which is ``mitigated`` meanwhile; they
  hold (a timeline note) or the incident goes to people.
- Waiting: a step that waits for time to pass (a restart, a reset, a reboot) parks its run; the
  incident stays ``mitigating`` and ``poke`` (every watch tick, and ``drain``) lets it poll on.
- Observe-only (the server says so in ``safety_status``): runbooks run as dry runs — planned,
  policy-checked, recorded with what they would have done — and the incident goes to people.

What waits (approvals, the breaker's backlog, waiting runs, confirmations) and the watch loop are in
``agents.waiting``. Everything is state in NATS (incidents, runs, approvals, breaker, leases), and nothing of it is
kept in this process: what waits for a person, the breaker, time or a confirmation is what the
incident says (``status``, ``pending_approvals``, ``held_by``, ``waiting_run``, ``confirming``).
Each replica watches the incidents it owns (``agents.ownership``); ``recover`` — at start and then
every few seconds — takes over the incidents whose owner's lease expired, and resumes them from
their persisted runs, repeating no finished mutation. Incidents on one node take turns and
incidents of one job plan one at a time through KV locks with a TTL, across replicas.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any

from agents import corruption
from agents.claims import CorrelationClaims, JobFault
from agents.correlator import Correlator
from agents.facts import Facts, gather_facts
from agents.grouping import (
    CLEANUP_XIDS,
    RESTARTING_RUNBOOKS,
    application_level,
    joins_job_incident,
)
from agents.incident_edits import (
    add_run_actions,
    args_text,
    confirm_later,
    done_waiting,
    escalate,
    escalate_once,
    evidence_of,
    hold_for_breaker,
    note_once,
    run_context,
    run_id_for,
    wait_on,
)
from agents.intake import fold
from agents.ownership import Ownership
from agents.planner import Planner
from agents.store import IncidentStore
from agents.waiting import Waits
from contracts.client import ToolClient
from events.gpu_ref import GpuRef
from events.incident import Incident, IncidentStatus, Plan
from events.models import utcnow
from runbooks.engine import RunbookEngine
from runbooks.state import RunState

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
STATUS_AFTER_PLAN: dict[str, IncidentStatus] = {
    "mitigate": "mitigating",
    "no_action": "suppressed",
    "escalate": "escalated",
}
JOB_CLEANUP_WINDOW_S = 600.0
"""How long after a job's fault a cleanup Xid on another node of its gang is taken as its symptom."""


class Mitigator(Waits):
    def __init__(
        self,
        *,
        store: IncidentStore,
        tools: ToolClient,
        engine: RunbookEngine,
        planner: Planner,
        clock: Clock = utcnow,
        start: Callable[[str], None] | None = None,
        ownership: Ownership,
        claims: CorrelationClaims,
        sweep_every_s: float | None = None,
    ) -> None:
        self.store = store
        self.tools = tools
        self.engine = engine
        self.planner = planner
        self.clock = clock
        self.start = start or (lambda incident_id: None)
        self.ownership = ownership
        self.claims = claims
        self.sweep_every_s = sweep_every_s if sweep_every_s is not None else ownership.leases.ttl_s / 2
        self.taken_over = 0
        """Incidents this replica took over from an owner whose lease expired."""

    def fence(self, incident_id: str) -> int:
        return self.ownership.token(incident_id)

    # -- plan and run -----------------------------------------------------------------------------

    async def mitigate(self, incident_id: str) -> Incident:
        """Plan (once) and run the plan. Incidents on the same node take turns: two faults of one
        node (two GPUs, say) must not both swap it out of its gang or restart its job at once, and
        the second plans from the facts the first one's actions left."""
        incident = await self.store.get_incident(incident_id)
        if incident is None:
            raise LookupError(incident_id)
        key = f"node.{incident.cluster}.{incident.affected_nodes[0]}" if incident.affected_nodes else None
        if key is None:
            return await self._mitigate(incident_id)
        async with self.ownership.turn(key, incident_id):
            return await self._mitigate(incident_id)

    async def _mitigate(self, incident_id: str) -> Incident:
        await self._confirm(incident_id)
        incident = await self.store.get_incident(incident_id)
        if incident is None:
            raise LookupError(incident_id)
        if incident.plan is None:
            incident = await self.plan(incident)
        plan = incident.plan
        if plan is None:
            return incident  # folded into the incident that explains it (see ``plan``)
        runnable = incident.status in ("mitigating", "awaiting_approval") or (
            incident.status == "escalated" and plan.disposition == "escalate"
        )
        if not plan.actions or not runnable or incident.held_by is not None:
            return incident
        escalated = False
        while True:
            for invocation in plan.actions:
                if corruption.skipped(incident, invocation):
                    continue
                run_id = corruption.run_id(incident, invocation, run_id_for(incident, invocation.runbook))
                incident, outcome = await self._run_chain(
                    incident, invocation.runbook, invocation.params, run_id
                )
                if outcome == "stop":
                    return incident
                escalated |= outcome == "escalated"
            # A chain in stages (silent data corruption: diagnose, then isolate and roll back).
            staged = await corruption.next_stage(incident, self.tools, self.store, self.clock)
            if staged is None or staged.plan is None:
                break
            incident, plan = staged, staged.plan
        incident = await self.store.update(incident_id, partial(self._finish, escalated=escalated))
        await self._confirm(incident_id)
        return await self.store.get_incident(incident_id) or incident

    async def _confirm(self, incident_id: str) -> None:
        """Go on with the ``confirm`` checks of the incident's succeeded runs."""
        incident = await self.store.get_incident(incident_id)
        for run_id in incident.confirming if incident is not None else []:
            state = await self.engine.confirm(run_id, fence=self.fence(incident_id))
            if state is None or state.confirm_status == "pending":
                continue
            book = self.engine.library.get(state.runbook)
            checks = "; ".join(step.description or step.id for step in book.confirm)
            now = self.clock()
            if state.confirm_status == "confirmed":
                outcome = partial(note_once, what="confirmed", detail=f"{state.runbook}: {checks}", at=now)
            else:
                why = f"after {state.runbook}, {checks} did not hold: {state.confirm_error}"
                outcome = partial(escalate_once, why=why, now=now)

            def settle(
                inc: Incident, run_id: str = run_id, outcome: Callable[[Incident], None] = outcome
            ) -> None:
                if run_id in inc.confirming:
                    inc.confirming.remove(run_id)
                    outcome(inc)

            await self.store.update(incident_id, settle)

    async def plan(self, incident: Incident) -> Incident:
        node = incident.affected_nodes[0]
        pci = incident.entity.split("/", 1)[1] if "/" in incident.entity else None
        gpu = GpuRef.parse(incident.affected_gpus[0]).index if incident.affected_gpus else None
        facts = await gather_facts(self.tools, node, gpu, pci if pci and ":" in pci else None)
        # Incidents of one job plan one at a time (across its nodes), so a storm of the job's own
        # errors folds into one incident and a second fault joins the restart already planned.
        job_lock = f"job.{incident.cluster}.{facts.job}" if facts.job else None
        async with self.ownership.turn(job_lock, incident.id) if job_lock else contextlib.nullcontext():
            cause = await self._job_fault(incident, facts.job)
            if cause is not None:
                codes = ", ".join(map(str, incident.xids))
                why = (
                    f"Xid {codes} is the driver cleaning up {facts.job}'s processes on {node} after the fault of {cause}"
                    if set(incident.xids) <= CLEANUP_XIDS
                    else f"Xid {codes} on {node} is another rank of {facts.job} hitting its own error: one incident about the job"
                )
                return await self.store.update(
                    incident.id, partial(fold, into=cause, why=why, now=self.clock())
                )
            plan = await self.planner.plan(incident, facts)
            pending = await self._restart_pending(incident, facts.job)
            if pending is not None:  # it joins that restart (one restart, every unfit node out)
                plan = _without_restart(plan, facts.job or "", pending)
            restarts = any(a.runbook in RESTARTING_RUNBOOKS for a in plan.actions)
            if facts.job and (plan.disposition == "mitigate" or restarts or _application_only(incident)):
                fault = JobFault(incident_id=incident.id, at=self.clock(), xids=list(incident.xids))
                await self.claims.remember_job_fault(incident.cluster, facts.job, fault)
            # Stored before the job's next incident plans: it must see this plan and its restart.
            return await self._store_plan(incident, plan, facts, node)

    async def _store_plan(self, incident: Incident, plan: Plan, facts: Facts, node: str) -> Incident:
        observe_only = await self._observe_only()
        now = self.clock()

        def apply(inc: Incident) -> None:
            inc.plan = plan
            inc.observe_only = observe_only
            for step in plan.notes:
                inc.note(step.what, step.detail, at=now)
            if plan.root_cause is not None:
                inc.root_cause = plan.root_cause.model_copy(deep=True)
            if facts.gpu is not None and str(GpuRef(node, facts.gpu)) not in inc.affected_gpus:
                inc.affected_gpus.append(str(GpuRef(node, facts.gpu)))
            if facts.job and facts.job not in inc.affected_jobs:
                inc.affected_jobs.append(facts.job)
            if inc.root_cause is not None and facts.gpu is not None and inc.root_cause.entity_type == "gpu":
                inc.root_cause.entity_id = GpuRef(node, facts.gpu).entity_id
            steps = ", ".join(f"{a.runbook}({args_text(a.params)})" for a in plan.actions)
            inc.note(
                f"plan by {plan.planner}", f"{plan.rationale}" + (f" → {steps}" if steps else ""), at=now
            )
            if observe_only and plan.actions:
                inc.note(
                    "observe-only",
                    "the platform runs the plan as a dry run: it checks and records, it changes nothing",
                )
            inc.status = STATUS_AFTER_PLAN[plan.disposition]

        return await self.store.update(incident.id, apply)

    async def _job_fault(self, incident: Incident, job: str | None) -> str | None:
        """The recent incident of ``job`` that this Xid incident folds into (``joins_job_incident``):
        a cleanup Xid after the job's fault, or another rank's application error of the same job."""
        if job is None or incident.kind != "xid" or not incident.xids:
            return None
        found = await self.claims.job_fault(incident.cluster, job)
        if found is None or found.incident_id == incident.id:
            return None
        if (self.clock() - found.at).total_seconds() > JOB_CLEANUP_WINDOW_S:
            return None
        return found.incident_id if joins_job_incident(incident.xids, frozenset(found.xids)) else None

    async def _restart_pending(self, incident: Incident, job: str | None) -> str | None:
        """The earlier incident of ``job`` whose plan restarts it but has not run that restart yet."""
        found = await self.claims.job_fault(incident.cluster, job) if job else None
        if found is None or found.incident_id == incident.id:
            return None
        earlier = await self.store.get_incident(found.incident_id)
        if (
            earlier is None
            or earlier.plan is None
            or earlier.status not in ("mitigating", "awaiting_approval")
        ):
            return None
        restarts = any(a.runbook in RESTARTING_RUNBOOKS for a in earlier.plan.actions)
        done = any(a.ok and a.tool == "restart_from_checkpoint" for a in earlier.actions)
        return earlier.id if restarts and not done else None

    async def _run_chain(
        self, incident: Incident, runbook: str, params: dict[str, Any], run_id: str | None = None
    ) -> tuple[Incident, str]:
        """Run one runbook (and its fallbacks); ``"ok"``, ``"escalated"`` (handed to people on
        purpose: the escalate runbook) or ``"stop"`` (parked, held or failed: the incident says)."""
        run_id = run_id or run_id_for(incident, runbook)
        if runbook == "escalate" and "evidence" not in params:
            params = {**params, "evidence": evidence_of(incident)}
        state = await self.engine.run(
            runbook,
            params,
            run_id=run_id,
            context=run_context(incident),
            dry_run=incident.observe_only,
            fence=self.fence(incident.id),
        )
        incident = await self.store.update(incident.id, partial(self.record_run, state=state))
        if state.status == "awaiting_approval":
            return await self._park(incident, state), "stop"
        if state.status == "waiting":
            why = state.error or f"runbook {state.runbook} waits"
            incident = await self.store.update(
                incident.id, partial(wait_on, run_id=run_id, why=why, at=self.clock())
            )
            return incident, "stop"
        if incident.waiting_run == run_id:
            incident = await self.store.update(incident.id, partial(done_waiting, run_id=run_id))
        fallback = self.engine.fallback_for(state)
        if fallback is not None:
            name, fallback_params = fallback
            why = f"runbook {runbook} {state.status}: {state.error or ''}; falling back to {name}"
            incident = await self.store.update(
                incident.id, partial(note_once, what="fallback", detail=why, at=self.clock())
            )
            return await self._run_chain(incident, name, fallback_params, f"{run_id}/fallback-{name}")
        if state.status == "succeeded" and state.confirm_status == "pending":
            incident = await self.store.update(incident.id, partial(confirm_later, run_id=run_id))
        if state.status in ("succeeded", "dry_run"):
            return incident, "escalated" if runbook == "escalate" and state.status == "succeeded" else "ok"
        why = f"runbook {state.runbook} {state.status}: {state.error or ''}".rstrip(": ")
        if state.status == "denied" and state.refusal is not None and state.refusal.kind == "breaker_open":
            return await self.store.update(
                incident.id, partial(hold_for_breaker, why=why, now=self.clock())
            ), "stop"
        return await self.store.update(incident.id, partial(escalate, why=why, now=self.clock())), "stop"

    def record_run(self, incident: Incident, *, state: RunState) -> None:
        """Write the run's mutating steps into the incident: actions with their decisions, timeline."""
        now = self.clock()
        for step, result in add_run_actions(incident, state, at=now, with_reasons=True):
            decision = step.decision or ("allow" if step.status == "done" else "error")
            incident.note(f"policy: {decision}", f"{step.tool} {args_text(step.arguments)}", at=now)
            if step.status == "done" and result.get("dry_run"):
                incident.note(
                    f"{step.tool} would run", "dry run: allowed by the policy, nothing changed", at=now
                )
            elif step.status == "done":
                incident.note(f"{step.tool} done", str(result.get("detail", "")), at=now)
                data = result.get("data")
                lost = data.get("gpu_hours_lost") if isinstance(data, dict) else None
                if isinstance(lost, int | float):
                    incident.gpu_hours_lost += float(lost)
            else:
                incident.note(f"{step.tool} failed", step.error or "", at=now)

    def _finish(self, incident: Incident, *, escalated: bool) -> None:
        now = self.clock()
        if incident.observe_only:
            incident.status = "escalated"
            incident.note(
                "observe-only: nothing changed",
                "the actions above are what the platform would have done; a person acts "
                "(or turns actions on: AIOPS_OBSERVE_ONLY=false)",
                at=now,
            )
        elif escalated or incident.status == "escalated":
            incident.status = "escalated"
            incident.note("handed to people", "containment done; the rest needs a person", at=now)
        else:
            incident.status = "mitigated"
            detail = f"{len(incident.actions)} action(s); {incident.gpu_hours_lost:.2f} GPU-hours lost"
            incident.note("mitigated", detail, at=now)

    async def _observe_only(self) -> bool:
        if "safety_status" not in await self.tools.tool_names():
            return False
        status = await self._safety()
        return bool(status and status.get("observe_only"))


def _application_only(incident: Incident) -> bool:
    return incident.kind == "xid" and bool(incident.xids) and all(map(application_level, incident.xids))


def _without_restart(plan: Plan, job: str, earlier: str) -> Plan:
    """The plan minus its restart of ``job``: the restart ``earlier`` planned covers this fault too."""
    kept = [a for a in plan.actions if a.runbook not in RESTARTING_RUNBOOKS]
    if len(kept) == len(plan.actions):
        return plan
    why = f"{plan.rationale}; joins the restart of {job} that {earlier} already planned (one restart, without every unfit node)"
    disposition = plan.disposition if kept or plan.disposition == "escalate" else "no_action"
    return plan.model_copy(update={"actions": kept, "rationale": why, "disposition": disposition})


def relearn(correlator: Correlator, incident: Incident) -> None:
    """Teach a fresh correlator (after a restart) an Xid incident it had open: its GPU under every
    name (PCI id, index), seen last at its latest event. Older ones age out of its window."""
    if incident.kind not in ("xid", "sxid") or not incident.affected_nodes or incident.folded_into:
        return
    node = incident.affected_nodes[0]
    seen = [e.time for e in incident.timeline if e.what in ("event", "event joined")] or [incident.opened_at]
    names = {
        incident.entity,
        *(GpuRef(node, GpuRef.parse(g).index).entity_id for g in incident.affected_gpus),
    }
    for name in sorted(n for n in names if n):
        correlator.track(incident.id, name, node, max(seen), set(incident.xids))
