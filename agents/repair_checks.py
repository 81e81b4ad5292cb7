"""When a deferred repair may start (``agents.repairs``): its incidents contained, nothing else
being contained or held by the circuit breaker, the node out of work, and the breaker's budget
left for containments."""

from __future__ import annotations

from agents.store import IncidentStore
from contracts.client import ToolClient
from events.repairs import Repair

CONTAINING = ("open", "mitigating", "awaiting_approval")


async def not_ready(repair: Repair, store: IncidentStore, tools: ToolClient) -> str | None:
    """Why ``repair`` may not start now, or None when it may."""
    busy = await containing(store)
    if busy is not None:
        return busy
    for incident_id in repair.incidents:
        incident = await store.get_incident(incident_id)
        if incident is not None and incident.status in CONTAINING:
            return f"{incident_id} is still {incident.status}: its containment comes first"
    if repair.dry_run:
        return None  # observe-only: the dry run changes nothing, so it need not wait
    status = await tools.call("service_status", {"node": repair.node})
    if not status.ok or not isinstance(status.structured, dict):
        return f"service_status {repair.node} failed: {status.text[:200]}"
    jobs = status.structured.get("jobs") or []
    if jobs:
        return f"{repair.node} still runs {', '.join(map(str, jobs))}: the repair waits until it is idle"
    if status.structured.get("maintenance"):
        return f"{repair.node}: {status.structured['maintenance']} under way"
    return await breaker_budget(tools, repair.node)


async def containing(store: IncidentStore) -> str | None:
    """Containment comes first, cluster-wide: a repair does not start while an incident is being
    planned or mitigated, or held by the circuit breaker (so a repair never spends the
    breaker's budget a containment needs)."""
    for incident in await store.list_incidents(["open", "mitigating", "escalated"], limit=10_000):
        if incident.status in ("open", "mitigating") and incident.folded_into is None:
            return f"{incident.id} is being contained ({incident.status}): repairs wait"
        if incident.held_by == "breaker":
            return f"{incident.id} is held by the circuit breaker: repairs wait"
    return None


async def breaker_budget(tools: ToolClient, node: str) -> str | None:
    """Why draining ``node`` now would trip (or meet) the circuit breaker, or None. The share of
    the cluster is estimated from the breaker's own figures (never above the true node count,
    so the estimate errs on waiting)."""
    safety = await tools.call("safety_status", {})
    if not safety.ok or not isinstance(safety.structured, dict):
        return None if "safety_status" not in await tools.tool_names() else "safety_status failed"
    breaker = safety.structured.get("breaker") or {}
    if breaker.get("open"):
        return "the circuit breaker is open: repairs wait until a person resets it"
    taken = set(breaker.get("taken_out") or [])
    pct, threshold = int(breaker.get("taken_out_pct") or 0), int(breaker.get("threshold_pct") or 0)
    if not taken or node in taken or pct <= 0:
        return None
    nodes = len(taken) * 100 / pct
    if (len(taken) + 1) * 100 > threshold * nodes:
        return f"draining {node} now would trip the circuit breaker ({len(taken)} nodes taken out in its window): the repair waits for the window"
    return None
