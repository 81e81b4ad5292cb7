"""What the platform's own incident history says about the fleet over a window: how many incidents,
how many took a node out, how long mitigation and repair took. The goodput advice (``tools/advice.py``)
and the spare reserve that follows it (``spare_reserve.py``) both count from here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from events.incident import Incident

if TYPE_CHECKING:
    from mcp_server.deps import ServerDeps

NODE_ROOTS = frozenset({"gpu", "node"})
HISTORY_LIMIT = 5000


class HistoryTooLong(ValueError):
    """The window holds more incidents than one read takes."""


@dataclass(frozen=True)
class History:
    """What the incident history says about the fleet over a window."""

    nodes: int
    window_days: float
    incidents: int
    node_removals: int
    repair_samples_s: tuple[float, ...]
    mitigate_samples_s: tuple[float, ...]

    @property
    def node_days(self) -> float:
        return self.nodes * self.window_days


def _entry(incident: Incident, what: str) -> datetime | None:
    return next((e.time for e in incident.timeline if e.what == what), None)


def history_of(incidents: list[Incident], nodes: int, now: datetime, window_days: float) -> History:
    """Count the window's incidents and measure their mitigation and repair times."""
    since = now - timedelta(days=window_days)
    counted = [
        i
        for i in incidents
        if since <= i.opened_at <= now and i.folded_into is None and i.status != "suppressed"
    ]
    removals = [i for i in counted if i.root_cause is not None and i.root_cause.entity_type in NODE_ROOTS]
    repairs, mitigations = [], []
    for incident in counted:
        mitigated, resolved = _entry(incident, "mitigated"), _entry(incident, "resolved")
        if mitigated is not None:
            mitigations.append((mitigated - incident.opened_at).total_seconds())
        if incident in removals and mitigated is not None and resolved is not None and resolved > mitigated:
            repairs.append((resolved - mitigated).total_seconds())
    return History(nodes, window_days, len(counted), len(removals), tuple(repairs), tuple(mitigations))


async def history(deps: ServerDeps, window_days: float, limit: int | None = None) -> History:
    """The history of the last ``window_days``; ``HistoryTooLong`` when it holds more than one read."""
    limit = HISTORY_LIMIT if limit is None else limit
    context = await deps.backend.fleet_context()
    found = await deps.incidents.list_incidents(None, limit)  # newest first
    if len(found) >= limit and found[-1].opened_at > context.now - timedelta(days=window_days):
        raise HistoryTooLong(
            f"the last {window_days:g} days hold more than {limit} incidents, more than this "
            "tool reads: pass a shorter window_days"
        )
    return history_of(found, context.cluster_nodes, context.now, window_days)
