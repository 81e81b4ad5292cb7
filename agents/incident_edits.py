"""Changes to an incident record that mitigation makes (and the agent, when a mitigation crashes):
timeline notes, escalation, the circuit breaker's hold and its release, and how a runbook run is
named and told about its incident. Each takes the incident first, so ``functools.partial`` turns
it into a change for ``IncidentStore.update``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from events.incident import ActionRecord, Incident
from runbooks.state import RunState, StepState


def run_id_for(incident: Incident, runbook: str) -> str:
    base = f"{incident.id}/{runbook}"
    return base if incident.attempt == 1 else f"{base}/attempt-{incident.attempt}"


def run_context(incident: Incident) -> dict[str, Any]:
    """What a run knows of its incident; ``fault`` (cluster and fault epoch, with the attempt after
    a breaker reset) makes the idempotency keys of its mutations (``runbooks.engine``)."""
    context: dict[str, Any] = {
        "incident": {"id": incident.id, "entity": incident.entity, "evidence": evidence_of(incident)}
    }
    if incident.fault_epoch:
        epoch = (
            incident.fault_epoch if incident.attempt == 1 else f"{incident.fault_epoch}.a{incident.attempt}"
        )
        context["fault"] = {"cluster": incident.cluster, "epoch": epoch}
    return context


def needs_owner(incident: Incident) -> bool:
    """Whether something of the incident is still to be done or watched by an agent replica (it
    keeps its lease): planning or running, a person's approval, the breaker, a waiting run, a
    confirmation. The takeover sweep gives such an incident to a live replica when its owner died."""
    if incident.folded_into is not None:
        return False
    return (
        incident.status in ("open", "mitigating", "awaiting_approval")
        or (incident.status == "escalated" and incident.held_by == "breaker")
        or incident.waiting_run is not None
        or bool(incident.confirming)
    )


def wait_on(incident: Incident, *, run_id: str, why: str, at: datetime) -> None:
    if incident.waiting_run != run_id:
        incident.waiting_run = run_id
        incident.note("waiting", why, at=at)


def done_waiting(incident: Incident, *, run_id: str) -> None:
    if incident.waiting_run == run_id:
        incident.waiting_run = None


def confirm_later(incident: Incident, *, run_id: str) -> None:
    if run_id not in incident.confirming:
        incident.confirming.append(run_id)


def evidence_of(incident: Incident) -> list[str]:
    found = [incident.title] if incident.title else []
    if incident.root_cause is not None:
        found += incident.root_cause.evidence[:10]
    found += [f"{a.tool} {args_text(a.arguments)}: {a.error or 'done'}" for a in incident.actions[-10:]]
    return found


def add_run_actions(
    incident: Incident, state: RunState, *, at: datetime, with_reasons: bool = False
) -> list[tuple[StepState, dict[str, Any]]]:
    """Put the run's mutating steps that finished (done or failed) onto the incident's actions, each
    with its decision (``with_reasons``: and a done step's policy reasons), once: a step already on
    it is skipped. Returns the steps added with their results (a result that is not a dict as
    ``{"text": result}``), for the caller's timeline notes."""
    added: list[tuple[StepState, dict[str, Any]]] = []
    for step in state.steps:
        if not step.mutating or step.status not in ("done", "failed"):
            continue
        if any(a.run_id == state.run_id and a.step == step.id for a in incident.actions):
            continue
        result = step.result if isinstance(step.result, dict) else {"text": step.result}
        reasons = (
            result.get("policy", {}).get("reasons", []) if with_reasons and step.status == "done" else []
        )
        incident.actions.append(
            ActionRecord(
                run_id=state.run_id,
                step=step.id,
                tool=step.tool,
                arguments=step.arguments,
                decision=step.decision,
                reasons=list(reasons),
                ok=step.status == "done",
                result=result,
                error=step.error,
                time=step.finished_at or at,
            )
        )
        added.append((step, result))
    return added


def note(incident: Incident, *, what: str, detail: str, at: datetime) -> None:
    incident.note(what, detail, at=at)


def note_once(incident: Incident, *, what: str, detail: str, at: datetime) -> None:
    if not any(e.what == what and e.detail == detail for e in incident.timeline):
        incident.note(what, detail, at=at)


def escalate_once(incident: Incident, *, why: str, now: datetime) -> None:
    if not any(e.detail == why for e in incident.timeline):
        escalate(incident, why=why, now=now)


def escalate(incident: Incident, *, why: str, now: datetime) -> None:
    incident.status = "escalated"
    incident.note("escalated to a person", why, at=now)


def hold_for_breaker(incident: Incident, *, why: str, now: datetime) -> None:
    incident.status, incident.held_by = "escalated", "breaker"
    incident.note(
        "held by the circuit breaker",
        f"{why}. A person resets the breaker (`aiops breaker reset`); then this incident is retried "
        "from current facts or left with people, as they decide",
        at=now,
    )


def retry_after_reset(incident: Incident, *, who: str, now: datetime) -> None:
    incident.held_by, incident.plan, incident.status = None, None, "open"
    incident.attempt += 1
    incident.note(
        "breaker reset",
        f"by {who}: retrying (attempt {incident.attempt}), re-planned from current facts",
        at=now,
    )


def release_to_people(incident: Incident, *, who: str, now: datetime) -> None:
    incident.held_by = None
    incident.note("breaker reset", f"by {who}: the backlog stays with people; nothing is retried", at=now)


def args_text(arguments: dict[str, object]) -> str:
    return ", ".join(
        f"{k}={v}"
        for k, v in arguments.items()
        if k not in ("idempotency_key", "reason", "incident_id", "dry_run")
    )
