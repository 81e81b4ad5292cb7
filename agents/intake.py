"""From correlated events to incident records: opening one per kind, absorbing later events into it,
folding per-node incidents into a shared-part one, and cancelling one a later signal contradicts.

No I/O: the triage agent calls these inside store updates. Growth is bounded: event ids, join
notes and folded ids are capped (the counts keep going), so a storm cannot bloat a record.
"""

from __future__ import annotations

from datetime import datetime

from agents.correlator import Correlation, gpu_entity
from agents.planner import describe_xid
from agents.topology import PART_LABEL, Verdict
from events.gpu_ref import GpuRef
from events.incident import EntityType, Incident, RootCause, Severity
from events.models import AnyEvent, EccEvent, HangEvent, NumericsEvent, ThroughputEvent, XidEvent

MAX_EVENT_IDS = 100
MAX_JOIN_NOTES = 25
MAX_FOLDED = 200
MAX_NODES = 256

_ECC_SEVERITY: dict[str, Severity] = {
    "dbe": "critical",
    "remap_failure": "critical",
    "remap_rows_exhausted": "critical",
    "retired_pages_hard": "critical",
    "remap_pending": "warning",
    "retired_pending": "warning",
    "remap_uncorrectable": "warning",
}


def _add(items: list[str], *new: str, cap: int = MAX_NODES) -> None:
    for item in new:
        if item and item not in items and len(items) < cap:
            items.append(item)


def open_incident(incident_id: str, event: AnyEvent, corr: Correlation, now: datetime) -> Incident:
    """The incident ``event`` opens (``corr.kind == "new"``)."""
    if corr.shared is not None:
        incident, why = _open_shared(incident_id, event, corr.shared)
    elif isinstance(event, XidEvent) and corr.incident_kind == "node":
        incident, why = _open_node(incident_id, event, corr)
    elif isinstance(event, XidEvent):
        incident, why = _open_xid(incident_id, event)
    elif isinstance(event, EccEvent):
        incident, why = _open_ecc(incident_id, event)
    elif isinstance(event, HangEvent):
        incident, why = _open_hang(incident_id, event)
    elif isinstance(event, NumericsEvent):
        incident, why = _open_numerics(incident_id, event)
    else:
        incident, why = _open_throughput(incident_id, event)
    incident.event_ids, incident.event_count = [event.event_id], 1
    if corr.repeat is not None:
        incident.severity = "critical"
        _add(incident.findings, "suspected_bad_hardware")
        if incident.root_cause is not None:
            incident.root_cause.confidence = max(incident.root_cause.confidence, 0.9)
            incident.root_cause.evidence.append(corr.repeat.summary)
        incident.note("repeated offender", corr.repeat.summary, at=event.time)
    incident.note("incident opened", why, at=now)
    return incident


def _open_xid(incident_id: str, event: XidEvent) -> tuple[Incident, str]:
    what = describe_xid(event.xid, sxid=event.sxid)
    where = (
        f"{event.node} GPU {event.gpu}" if event.gpu is not None else f"{event.node} {event.pci_bus_id or ''}"
    )
    incident = Incident(
        id=incident_id,
        cluster=event.cluster,
        kind="sxid" if event.sxid else "xid",
        title=f"{'SXid' if event.sxid else 'Xid'} {event.xid} {what.mnemonic} on {where.strip()}",
        severity=what.severity,
        opened_at=event.time,
        entity=gpu_entity(event),
        root_cause=RootCause(
            entity_type="gpu" if (event.gpu is not None or event.pci_bus_id) else "node",
            entity_id=gpu_entity(event),
            confidence=0.5,
            evidence=[event.raw or event.message],
        ),
        xids=[event.xid],
        recovery_action=event.recovery_action,
        affected_nodes=[event.node],
        affected_gpus=[str(GpuRef(event.node, event.gpu))] if event.gpu is not None else [],
    )
    incident.note("event", f"Xid {event.xid} ({what.mnemonic}): {event.message}", at=event.time)
    return incident, what.meaning


def _open_node(incident_id: str, event: XidEvent, corr: Correlation) -> tuple[Incident, str]:
    """The same hardware Xid on most GPUs of one node at once: an incident about the node."""
    what = describe_xid(event.xid)
    incident = Incident(
        id=incident_id,
        cluster=event.cluster,
        kind="node",
        title=f"Xid {event.xid} {what.mnemonic} on most GPUs of {event.node}: node-wide fault",
        severity="critical",
        opened_at=event.time,
        entity=event.node,
        root_cause=RootCause(
            entity_type="node", entity_id=event.node, confidence=0.8, evidence=[event.raw or event.message]
        ),
        xids=[event.xid],
        affected_nodes=[event.node],
        findings=["node_wide"],
        folded=list(corr.folds[:MAX_FOLDED]),
    )
    incident.note("event", f"Xid {event.xid} ({what.mnemonic}): {event.message}", at=event.time)
    return incident, corr.reason


def _open_ecc(incident_id: str, event: EccEvent) -> tuple[Incident, str]:
    entity = (
        f"{event.node}/{event.pci_bus_id}" if event.pci_bus_id else GpuRef(event.node, event.gpu).entity_id
    )
    severity: Severity = "info"
    for finding in event.findings:
        level = _ECC_SEVERITY.get(finding, "info")
        if level == "critical" or (level == "warning" and severity == "info"):
            severity = level
    counters = (
        f"DBE volatile/aggregate {event.dbe_volatile}/{event.dbe_aggregate}, "
        f"SBE {event.sbe_volatile}/{event.sbe_aggregate}, remapped rows correctable/uncorrectable "
        f"{event.remap_correctable}/{event.remap_uncorrectable}, remap pending {event.remap_pending}, "
        f"remap failure {event.remap_failure}, retired pages {event.retired_sbe + event.retired_dbe}"
    )
    incident = Incident(
        id=incident_id,
        cluster=event.cluster,
        kind="ecc",
        title=f"{'DCGM' if 'thermal_recurring' in event.findings else 'ECC'} {', '.join(event.findings)} on {event.node} GPU {event.gpu}",
        severity=severity,
        opened_at=event.time,
        entity=entity,
        root_cause=RootCause(
            entity_type="gpu",
            entity_id=GpuRef(event.node, event.gpu).entity_id,
            confidence=0.7,
            evidence=[event.reason, counters],
        ),
        affected_nodes=[event.node],
        affected_gpus=[str(GpuRef(event.node, event.gpu))],
        findings=[f"ecc.{f}" for f in event.findings],
    )
    incident.note("event", f"DCGM: {event.reason} ({counters})", at=event.time)
    return incident, event.reason


def _open_hang(incident_id: str, event: HangEvent) -> tuple[Incident, str]:
    culprit = len(event.nodes) == 1 and event.ranks_total > len(event.ranks)
    who = f"rank(s) {_ranks(event.ranks)} on {', '.join(event.nodes)}" if event.nodes else "unknown ranks"
    cause: tuple[EntityType, str] = ("node", event.nodes[0]) if culprit else ("job", event.job)
    incident = Incident(
        id=incident_id,
        cluster=event.cluster,
        kind="hang",
        title=f"Hang: {event.job} stopped at step {event.last_step}; first stalled {who}",
        severity="critical",
        opened_at=event.time,
        entity=event.job,
        root_cause=RootCause(
            entity_type=cause[0],
            entity_id=cause[1],
            confidence=0.6 if culprit else 0.3,
            evidence=[
                f"no progress for {event.stalled_for_s:.0f} s (threshold {event.threshold_s:.0f} s); {event.how}"
            ],
        ),
        affected_nodes=list(event.nodes[:MAX_NODES]),
        affected_gpus=list(event.gpus) if culprit else [],
        affected_jobs=[event.job],
        findings=["hang", "hang.culprit"] if culprit else ["hang"],
    )
    incident.note(
        "event",
        f"{event.job}: no progress for {event.stalled_for_s:.0f} s since step {event.last_step}; "
        f"first stalled {who} ({event.how})",
        at=event.time,
    )
    return incident, f"first stalled {who}: {event.how}"


def _open_throughput(incident_id: str, event: ThroughputEvent) -> tuple[Incident, str]:
    signature = event.signature or "workload"
    suspects = event.suspect_nodes
    if signature == "straggler" and len(suspects) == 1:
        cause: tuple[EntityType, str] = ("node", suspects[0])
    elif signature == "network" and event.suspect_switches:
        cause = ("switch", ", ".join(event.suspect_switches))
    else:
        cause = ("job", event.job)
    where = ", ".join(suspects or event.suspect_switches) or "no single rank or link"
    incident = Incident(
        id=incident_id,
        cluster=event.cluster,
        kind="throughput",
        title=f"{event.job} runs {event.slowdown:.2f}x slower ({signature}: {where})",
        severity="warning",
        opened_at=event.time,
        entity=event.job,
        root_cause=RootCause(
            entity_type=cause[0],
            entity_id=cause[1],
            confidence=0.6 if cause[0] != "job" else 0.3,
            evidence=[
                f"step time {event.observed_step_s:.3f} s vs baseline {event.baseline_step_s:.3f} s "
                f"for {event.sustained_s:.0f} s; suspect ranks {_ranks(event.suspect_ranks) or 'none'}"
            ],
        ),
        affected_nodes=list((suspects or event.nodes)[:MAX_NODES]),
        affected_gpus=list(event.suspect_gpus[:MAX_NODES]),
        affected_jobs=[event.job],
        findings=[f"throughput.{signature}"],
    )
    incident.note("event", f"{incident.title}; {incident.root_cause.evidence[0]}", at=event.time)  # type: ignore[union-attr]
    return incident, f"{signature} slowdown"


def _open_numerics(incident_id: str, event: NumericsEvent) -> tuple[Incident, str]:
    """Suspected silent data corruption on the job: critical, about the job (a suspect GPU when its
    own gradient norm singled one out); the job's nodes, suspects' first, are where to diagnose."""
    suspects = [GpuRef.parse(g) for g in event.suspect_gpus]
    nodes = list(dict.fromkeys([g.node for g in suspects] + event.nodes))
    cause: tuple[EntityType, str] = (
        ("gpu", suspects[0].entity_id) if len(suspects) == 1 else ("job", event.job)
    )
    shown = f"{event.value:g}" if event.value is not None else "?"
    incident = Incident(
        id=incident_id,
        cluster=event.cluster,
        kind="numerics",
        title=f"suspected silent data corruption on {event.job}: {event.signature} at step {event.first_bad_step}",
        severity="critical",
        opened_at=event.time,
        entity=event.job,
        root_cause=RootCause(
            entity_type=cause[0],
            entity_id=cause[1],
            confidence=0.5 if cause[0] == "gpu" else 0.3,
            evidence=[
                f"{event.signature}: {shown} (baseline {event.baseline}) from step {event.first_bad_step}, "
                f"last good step {event.last_good_step}; suspect ranks {_ranks(event.suspect_ranks) or 'none'}"
                + (f"; {event.reason}" if event.reason else "")
            ],
        ),
        affected_nodes=nodes[:MAX_NODES],
        affected_gpus=list(event.suspect_gpus[:MAX_NODES]),
        affected_jobs=[event.job],
        findings=[f"numerics.{event.signature}"],
    )
    remember_numerics(incident, event)
    incident.note("event", f"{incident.title}; {incident.root_cause.evidence[0]}", at=event.time)  # type: ignore[union-attr]
    return incident, f"{event.signature}: the job's numerics went wrong with no hardware error"


def remember_numerics(incident: Incident, event: NumericsEvent) -> None:
    """Keep what a rollback needs on the incident (``incident.numerics``): the earliest corruption
    seen and the last good step before it, over every numerics event of the episode."""
    known = dict(getattr(incident, "numerics", None) or {})
    first, good = known.get("first_bad_step"), known.get("last_good_step")
    if first is None or event.first_bad_step < first:
        known["first_bad_step"] = event.first_bad_step
    if event.last_good_step is not None and (good is None or event.last_good_step < good):
        known["last_good_step"] = event.last_good_step
    known["suspect_gpus"] = sorted(set(known.get("suspect_gpus", [])) | set(event.suspect_gpus))
    known.setdefault("job", event.job)
    incident.numerics = known  # type: ignore[attr-defined]  # Incident keeps extra fields


def _open_shared(incident_id: str, event: AnyEvent, verdict: Verdict) -> tuple[Incident, str]:
    kind, part = verdict.part
    label = PART_LABEL[kind]
    jobs = list(verdict.jobs)
    incident = Incident(
        id=incident_id,
        cluster=event.cluster,
        kind=kind,
        title=(
            f"{label[0].upper()}{label[1:]} {part} suspected: "
            f"{len(jobs) or len(verdict.nodes)} {'jobs' if jobs else 'nodes'} on {len(verdict.nodes)} nodes at once"
        ),
        severity="critical",
        opened_at=event.time,
        entity=part,
        root_cause=RootCause(
            entity_type=kind,
            entity_id=part,
            confidence=0.8 if len(verdict.evidence) > 1 else 0.6,
            evidence=list(verdict.evidence),
        ),
        affected_nodes=list(verdict.nodes[:MAX_NODES]),
        affected_jobs=jobs,
        findings=[f"shared.{kind}"],
        folded=list(verdict.folds[:MAX_FOLDED]),
    )
    for line in verdict.evidence:
        incident.note("signal", line, at=event.time)
    return incident, verdict.reason


def absorb(
    incident: Incident, events: list[AnyEvent], correlations: list[Correlation], now: datetime
) -> None:
    """Add later events to ``incident`` (deduplicated ones only count)."""
    for event, corr in zip(events, correlations, strict=True):
        incident.event_count += 1
        if len(incident.event_ids) < MAX_EVENT_IDS:
            incident.event_ids.append(event.event_id)
        if corr.kind == "duplicate":
            continue
        if corr.kind == "cancel":
            cancel(incident, corr.reason, now)
            continue
        if isinstance(event, XidEvent):
            if event.xid not in incident.xids:
                incident.xids.append(event.xid)
            if event.recovery_action:
                incident.recovery_action = event.recovery_action
            detail = f"{corr.reason}: {event.message}"
        elif isinstance(event, EccEvent):
            _add(incident.findings, *(f"ecc.{f}" for f in event.findings))
            detail = f"{corr.reason}: DCGM {event.reason}"
        elif isinstance(event, HangEvent):
            _add(incident.findings, "hang")
            _add(incident.affected_jobs, event.job)
            detail = corr.reason
        elif isinstance(event, NumericsEvent):
            _add(incident.findings, f"numerics.{event.signature}")
            _add(incident.affected_jobs, event.job)
            _add(incident.affected_nodes, *event.nodes)
            remember_numerics(incident, event)
            detail = corr.reason
        else:
            _add(incident.findings, f"throughput.{event.signature or 'workload'}")
            _add(incident.affected_jobs, event.job)
            detail = corr.reason
        if corr.shared is not None:
            _add(incident.affected_nodes, *corr.shared.nodes)
            _add(incident.affected_jobs, *corr.shared.jobs)
            _add(incident.folded, *corr.shared.folds, cap=MAX_FOLDED)
            if incident.root_cause is not None and len(incident.root_cause.evidence) < 50:
                incident.root_cause.evidence.append(corr.reason)
        if incident.status == "suppressed" and corr.kind == "joined":
            reopen(incident, corr.reason, event.time)
        joins = sum(1 for e in incident.timeline if e.what == "event joined")
        if joins < MAX_JOIN_NOTES:
            incident.note("event joined", detail, at=event.time)
        elif joins == MAX_JOIN_NOTES:
            incident.note(
                "event joined", f"{detail} (further joins are counted in event_count only)", at=event.time
            )


def reopen(incident: Incident, why: str, now: datetime) -> None:
    """New evidence on an incident judged benign (a DCGM remap-pending counter after the driver's
    Xid 63 line, a fatal Xid after an application one): plan it again from everything it holds.
    Each reopening needs evidence the incident did not have (repeats are duplicates), so a storm
    cannot keep re-planning it."""
    previous = incident.plan.rationale if incident.plan is not None else "no plan"
    incident.status = "open"
    incident.plan = None
    incident.note("reopened", f"new evidence ({why}) after it was judged benign ({previous})", at=now)


def cancel(incident: Incident, why: str, now: datetime) -> None:
    """A later signal says the fault is gone: resolve the incident if nothing was done yet."""
    if incident.status == "open":
        incident.status = "resolved"
        incident.note("cancelled by a later signal", why, at=now)
    elif incident.status not in ("resolved", "suppressed"):
        incident.note("later signal", f"{why} (the incident is {incident.status}; its actions stand)", at=now)


def fold(incident: Incident, *, into: str, why: str, now: datetime) -> None:
    """Another incident explains this one (a shared part it hangs off, or the fault of the job whose
    processes a cleanup Xid tore down): suppress it if nothing was done yet, link it anyway."""
    if incident.folded_into == into or incident.id == into:
        return
    incident.folded_into = into
    if incident.status == "open":
        incident.status = "suppressed"
        incident.note("folded into the incident that explains it", f"{into}: {why}", at=now)
    else:
        incident.note(
            "linked to the incident that explains it", f"{into}: {why} (already {incident.status})", at=now
        )


def _ranks(ranks: list[int]) -> str:
    shown = ", ".join(map(str, ranks[:8]))
    return shown + (f" (+{len(ranks) - 8} more)" if len(ranks) > 8 else "")
