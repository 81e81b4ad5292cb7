"""Groups events into incidents: deduplication per entity within a window, sympathetic Xids join
the incident of their cause.

Pure and synchronous (no I/O): the agent feeds it events in order and persists what it decides.
Windows run on event time, so replays and a fast simulated clock behave the same as real time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from events.models import XidEvent, stable_id

SYMPATHETIC_XIDS = frozenset({45})
"""Xids that report the aftermath of another fault; they never open an incident while a cause is open."""

CorrelationKind = Literal["new", "duplicate", "joined"]


def gpu_entity(event: XidEvent) -> str:
    """The entity an Xid is about: the GPU (by PCI id, else index), the NVSwitch, else the node."""
    if event.sxid and event.nvswitch:
        return f"{event.node}/{event.nvswitch}"
    if event.pci_bus_id:
        return f"{event.node}/{event.pci_bus_id}"
    if event.gpu is not None:
        return f"{event.node}/gpu{event.gpu}"
    return event.node


@dataclass
class _Open:
    incident_id: str
    node: str
    last_seen: datetime
    xids: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class Correlation:
    incident_id: str
    kind: CorrelationKind
    reason: str

    @property
    def new(self) -> bool:
        return self.kind == "new"


class Correlator:
    def __init__(self, window_s: float = 600.0) -> None:
        self.window = timedelta(seconds=window_s)
        self._by_entity: dict[str, _Open] = {}

    def assign(self, event: XidEvent) -> Correlation:
        self._expire(event.time)
        entity = gpu_entity(event)
        current = self._by_entity.get(entity)
        sympathetic = event.xid in SYMPATHETIC_XIDS or event.caused_by_xid is not None
        if sympathetic:
            cause = current or self._open_on_node(event.node)
            if cause is not None:
                cause.last_seen = max(cause.last_seen, event.time)
                why = f"Xid {event.xid} follows Xid {event.caused_by_xid}" if event.caused_by_xid else ""
                return Correlation(cause.incident_id, "joined", why or f"Xid {event.xid} is sympathetic")
        if current is not None:
            current.last_seen = max(current.last_seen, event.time)
            if event.xid in current.xids:
                return Correlation(current.incident_id, "duplicate", f"Xid {event.xid} on {entity} again")
            current.xids.add(event.xid)
            return Correlation(current.incident_id, "joined", f"Xid {event.xid} on the same GPU")
        incident_id = f"inc-{stable_id(event.cluster, entity, event.event_id)[:12]}"
        self._by_entity[entity] = _Open(incident_id, event.node, event.time, {event.xid})
        return Correlation(incident_id, "new", f"first Xid {event.xid} on {entity}")

    def track(self, incident_id: str, entity: str, node: str, last_seen: datetime, xids: set[int]) -> None:
        """Re-learn an open incident (after a restart, from the store)."""
        self._by_entity[entity] = _Open(incident_id, node, last_seen, set(xids))

    def _open_on_node(self, node: str) -> _Open | None:
        candidates = [o for o in self._by_entity.values() if o.node == node]
        return max(candidates, key=lambda o: o.last_seen) if candidates else None

    def _expire(self, now: datetime) -> None:
        stale = [k for k, o in self._by_entity.items() if now - o.last_seen > self.window]
        for key in stale:
            del self._by_entity[key]
