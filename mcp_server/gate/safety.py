"""The facts every policy check weighs: blast radius, breaker, spares, checkpoint cost, freezes.

``policy_context`` builds the Cedar context of one call from the backend and the breaker state;
the guard adds what only it knows (an approval it found). Numbers are whole (Cedar has no floats):
shares in percent rounded up, GPU-hours rounded up, ages in seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from contracts.tools import NodeDetail
from mcp_server.gate.breaker import TAKES_OUT, BreakerState, share_pct, would_trip
from mcp_server.gate.policy import CedarValue, Resource
from mcp_server.spare_reserve import reserve

if TYPE_CHECKING:  # deps imports FreezeWindow from here
    from mcp_server.deps import ServerDeps

CONSUMES_SPARE = frozenset({"swap_spare", "restart_from_checkpoint"})
"""Actions that can take a warm spare (a restart replaces unfit gang members with spares); each
answers to the reserve rule (policy ``spare-reserve-needs-approval``), the tool telling whether
this call takes one (``takes_spare``)."""


@dataclass(frozen=True)
class FreezeWindow:
    """A change freeze: from ``start`` to ``end`` on the backend's clock, the agent acts only with a
    person's approval (policy ``change-freeze-agent-needs-approval``)."""

    start: datetime
    end: datetime
    reason: str = ""

    def covers(self, now: datetime) -> bool:
        return self.start <= now < self.end


@dataclass
class CallFacts:
    """What ``policy_context`` learned on the way, for the guard's breaker bookkeeping."""

    now: datetime
    cluster_nodes: int
    node: str | None
    breaker: BreakerState
    taken_out: list[str]
    trips_breaker: bool


def node_of(resource: Resource) -> str | None:
    """The node an action touches: the Node itself, or the node of a GPU."""
    if resource.type == "Node":
        return resource.id
    if resource.type == "Gpu":
        return str(resource.attrs.get("node") or resource.id.split("/", 1)[0])
    return None


def out_of_service(node: NodeDetail) -> bool:
    return node.cordoned or node.state != "ready" or node.gpus_isolated > 0


async def policy_context(
    deps: ServerDeps, action: str, resource: Resource, *, dry_run: bool, incident_id: str | None
) -> tuple[dict[str, CedarValue], CallFacts]:
    backend, limits = deps.backend, deps.limits
    fleet = await backend.fleet_context()
    ctx: dict[str, CedarValue] = {
        "dry_run": dry_run,
        "isolations_last_hour": fleet.isolations_last_hour,
        "max_isolations_per_hour": limits.max_isolations_per_hour,
        "cluster_nodes": fleet.cluster_nodes,
        "nodes_out_of_service": fleet.nodes_out_of_service,
        "max_out_of_service_pct": limits.max_out_of_service_pct,
        "breaker_threshold_pct": limits.breaker_threshold_pct,
        "max_gpu_hours_at_risk": limits.max_gpu_hours_at_risk,
        "observe_only": limits.observe_only,
        "agent_requires_approval": limits.agent_requires_approval,
        "change_freeze": any(w.covers(fleet.now) for w in limits.freeze_windows),
    }
    if incident_id:
        ctx["incident_id"] = incident_id

    node = node_of(resource)
    takes_out = action in TAKES_OUT and node is not None
    out = fleet.nodes_out_of_service
    if takes_out and node is not None and not out_of_service(await backend.get_node(node)):
        out += 1
    ctx["out_of_service_pct"] = share_pct(out, fleet.cluster_nodes)

    breaker = await deps.breaker.load(backend.cluster)
    taken = breaker.nodes_taken_out(fleet.now, limits.breaker_window_s)
    projected = sorted(set(taken) | {node}) if takes_out and node is not None else taken
    trips = (
        takes_out
        and not breaker.open
        and would_trip(len(projected), fleet.cluster_nodes, limits.breaker_threshold_pct)
    )
    ctx["taken_out_pct"] = share_pct(len(projected), fleet.cluster_nodes)
    # A real take-out that trips the breaker is refused by the open breaker (the guard trips it
    # first); a dry run leaves the breaker closed and says it would trip.
    ctx["breaker_open"] = breaker.open or (trips and not dry_run)
    ctx["breaker_would_trip"] = trips and dry_run

    if action in CONSUMES_SPARE:
        ctx["spares_available"] = (await backend.spare_pool()).fit
        ctx["min_spares"] = (await reserve(deps)).spares
    else:
        ctx["min_spares"] = limits.min_spares
    if resource.type == "Job":
        checkpoint = await backend.checkpoint_status(resource.id)
        ctx["gpu_hours_at_risk"] = math.ceil(checkpoint.gpu_hours_at_risk)
        if checkpoint.checkpoint_age_s is not None:
            ctx["checkpoint_age_s"] = int(checkpoint.checkpoint_age_s)
    facts = CallFacts(
        now=fleet.now,
        cluster_nodes=fleet.cluster_nodes,
        node=node,
        breaker=breaker,
        taken_out=projected,
        trips_breaker=trips,
    )
    return ctx, facts
