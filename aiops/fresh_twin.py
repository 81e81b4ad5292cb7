"""A fresh fleet twin on an old data directory: what an earlier `aiops up` left about its own twin
must not pass for the state of this one.

Each `aiops up` builds a new twin (every GPU healthy, nothing isolated), while NATS keeps its data
directory. The circuit breaker is kept per twin run (``mcp_server.gate.breaker``, ``generation``);
incidents an earlier twin left unfinished (open, mitigating, waiting for an approval, escalated)
are closed here, before the agent starts, with a resolution that says why — they stay readable
(``/gpu incidents --all``, ``get_incident``), and no longer show as open trouble in this fleet.
"""

from __future__ import annotations

import logging
from datetime import datetime

from agents.store import IncidentStore
from events.incident import Incident, IncidentStatus

log = logging.getLogger(__name__)

UNFINISHED: frozenset[IncidentStatus] = frozenset({"open", "mitigating", "awaiting_approval", "escalated"})
RESOLVER = "aiops up"
RESOLUTION = "closed at start: it was about the fleet twin of an earlier run, replaced by a fresh twin"


async def close_earlier_twins_incidents(store: IncidentStore, now: datetime) -> list[str]:
    """Resolve every unfinished incident (all from an earlier twin: this one has raised none yet);
    the ids closed. The note goes at the end of each incident's own timeline (an earlier twin's
    clock may have run past this one's)."""
    closed: list[str] = []
    for found in await store.list_incidents(UNFINISHED, limit=1_000_000):

        def close(incident: Incident) -> None:
            if incident.status in UNFINISHED:
                incident.status, incident.resolved_by, incident.resolution = "resolved", RESOLVER, RESOLUTION
                incident.pending_approvals = []
                incident.note("resolved", f"by {RESOLVER}: {RESOLUTION}", at=max(now, incident.updated_at))

        await store.update(found.id, close)
        closed.append(found.id)
    if closed:
        log.info("closed %d incident(s) of an earlier twin run: %s", len(closed), ", ".join(closed))
    return closed
