"""Changes to an incident record that mitigation makes (and the agent, when a mitigation crashes):
timeline notes, escalation, the circuit breaker's hold and its release, and how a runbook run is
named and told about its incident. Each takes the incident first, so ``functools.partial`` turns
it into a change for ``IncidentStore.update``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from events.incident import Incident


def run_id_for(incident: Incident, runbook: str) -> str:
    base = f"{incident.id}/{runbook}"
    return base if incident.attempt == 1 else f"{base}/attempt-{incident.attempt}"


def run_context(incident: Incident) -> dict[str, Any]:
    return {"incident": {"id": incident.id, "entity": incident.entity, "evidence": evidence_of(incident)}}


def evidence_of(incident: Incident) -> list[str]:
    found = [incident.title] if incident.title else []
    if incident.root_cause is not None:
        found += incident.root_cause.evidence[:10]
    found += [f"{a.tool} {args_text(a.arguments)}: {a.error or 'done'}" for a in incident.actions[-10:]]
    return found


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
