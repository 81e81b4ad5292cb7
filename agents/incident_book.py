"""The correlator's book of open incidents: which entity keys point at which incident, for how long.

``agents.correlator.Correlator`` decides what an event means; this base class keeps the result:
the open incidents by key (GPU names, ``node:``, ``job:``, ``part:``), the latest hardware incident
of each node (kept for ``cause_window``: a hang on that node within the hour is its doing), the
incidents adopted into another replica's or folded into a node-level or shared-part one, and the
route of a signal to the shared-part incident topology blames (``agents.topology``).

Memory is bounded: entries expire with the window and the tables are capped (oldest out first).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from agents.grouping import explains_stall
from agents.offenders import OffenderLedger, Repeat
from agents.topology import Signal, SignalClass, TopologyCorrelator, Verdict
from events.fabric import FabricMap, Part
from events.models import AnyEvent, stable_id

CorrelationKind = Literal["new", "duplicate", "joined", "cancel", "ignored"]


@dataclass
class OpenIncident:
    incident_id: str
    kind: str
    node: str | None
    last_seen: datetime
    keys: list[str] = field(default_factory=list)
    xids: set[int] = field(default_factory=set)
    tags: set[str] = field(default_factory=set)
    recovery_action: str | None = None


@dataclass(frozen=True)
class Correlation:
    incident_id: str
    kind: CorrelationKind
    reason: str
    incident_kind: str = ""
    """For ``new``: what the incident is (xid, sxid, ecc, hang, throughput, switch, rack, nvlink_domain)."""
    hold: bool = False
    """For ``new``: wait for concurrent signals before planning (topology may fold it)."""
    shared: Verdict | None = None
    repeat: Repeat | None = None
    folds: tuple[str, ...] = ()
    """For a ``new`` node-level incident: the per-GPU incidents it replaces (they fold into it)."""
    keys: tuple[str, ...] = ()
    """For ``new``: the fault's correlation keys, claimed across replicas (``agents.claims``)."""

    @property
    def new(self) -> bool:
        return self.kind == "new"


class IncidentBook:
    """Open incidents by entity key, expiring on event time (the state of a ``Correlator``)."""

    def __init__(
        self,
        window_s: float = 600.0,
        *,
        fabric: FabricMap | None = None,
        offenders: OffenderLedger | None = None,
        cause_window_s: float = 3600.0,
        max_entries: int = 100_000,
        gpus_per_node: int = 8,
    ) -> None:
        self.window = timedelta(seconds=window_s)
        self.cause_window = timedelta(seconds=max(window_s, cause_window_s))
        self.max_entries = max_entries
        self.topology = TopologyCorrelator(fabric, window_s=window_s)
        self.offenders = offenders or OffenderLedger()
        self._by_key: OrderedDict[str, OpenIncident] = OrderedDict()
        self._parent: OrderedDict[str, str] = OrderedDict()
        # The latest hardware incident of each node, kept longer than the dedupe window: a hang or
        # slow rank on that node within the hour (after a drain, a reset, a restart) is its doing.
        self._hardware: OrderedDict[str, OpenIncident] = OrderedDict()
        # Per node and Xid code, the GPUs that reported it lately (a node-wide fault is one incident).
        self._node_gpus: OrderedDict[tuple[str, int], OrderedDict[str, tuple[OpenIncident, datetime]]] = (
            OrderedDict()
        )
        self.gpus_per_node = gpus_per_node

    @property
    def fabric(self) -> FabricMap:
        return self.topology.fabric

    @fabric.setter
    def fabric(self, fabric: FabricMap) -> None:
        self.topology.fabric = fabric

    def __len__(self) -> int:
        return len(self._by_key) + len(self._hardware)

    def track(self, incident_id: str, entity: str, node: str, last_seen: datetime, xids: set[int]) -> None:
        """Re-learn an open incident (after a restart, from the store), with its node, so the hangs a
        hardware incident explains still join it."""
        self._remember(OpenIncident(incident_id, "xid", node, last_seen, [entity], set(xids)), node_key=True)

    def adopt(self, local_id: str, shared_id: str) -> None:
        """Another replica's incident owns the fault this correlator opened ``local_id`` for
        (``agents.claims``): from now on every event that would join ``local_id`` joins it."""
        if local_id == shared_id:
            return
        self._parent[local_id] = shared_id
        self._parent.move_to_end(local_id)
        while len(self._parent) > self.max_entries:
            self._parent.popitem(last=False)

    def resolve(self, incident_id: str) -> str:
        """The incident an id stands for now (itself, or the one it was adopted into or folded into)."""
        return self._root(incident_id)

    # -- topology ------------------------------------------------------------------------------------

    def _signal(
        self,
        event: AnyEvent,
        klass: SignalClass,
        nodes: tuple[str, ...],
        parts: tuple[Part, ...] | None,
        incident_id: str,
        summary: str,
        *,
        job: str | None = None,
        decisive: bool = False,
    ) -> Verdict | None:
        signal = Signal(
            time=event.time,
            klass=klass,
            nodes=nodes,
            parts=parts if parts else self.topology.parts_of(nodes, klass),
            summary=summary,
            job=job,
            incident_id=incident_id,
            decisive=decisive,
        )
        if not signal.parts:
            return None
        verdict = self.topology.observe(
            signal, lambda part: self._new_id(event.cluster, f"{part[0]}:{part[1]}", event.event_id)
        )
        if verdict is not None:
            for folded in verdict.folds:
                self._parent[folded] = verdict.incident_id
                while len(self._parent) > self.max_entries:
                    self._parent.popitem(last=False)
        return verdict

    def _to_shared(self, verdict: Verdict, at: datetime, tag: str, keys: list[str]) -> Correlation:
        """The event goes to the shared-part incident (opened now or earlier); its own entity keys
        point there from now on, so its later events follow."""
        kind, part_id = verdict.part
        part_key = f"part:{kind}:{part_id}"
        shared = self._by_key.get(part_key)
        if shared is None or shared.incident_id != verdict.incident_id:
            shared = OpenIncident(verdict.incident_id, kind, None, at, [part_key])
            self._remember(shared)
        self._touch(shared, at)
        shared.tags.add(tag)
        for key in keys:
            self._alias(key, shared)
        if verdict.new:
            return Correlation(
                verdict.incident_id, "new", verdict.reason, kind, hold=True, shared=verdict, keys=(part_key,)
            )
        return Correlation(verdict.incident_id, "joined", verdict.reason, shared=verdict)

    # -- bookkeeping ---------------------------------------------------------------------------------

    def _root(self, incident_id: str) -> str:
        seen = 0
        while incident_id in self._parent and seen < 8:
            incident_id, seen = self._parent[incident_id], seen + 1
        return incident_id

    def _join(self, current: OpenIncident, reason: str) -> Correlation:
        return Correlation(self._root(current.incident_id), "joined", reason)

    def _duplicate(self, current: OpenIncident, reason: str) -> Correlation:
        return Correlation(self._root(current.incident_id), "duplicate", reason)

    @staticmethod
    def _new_id(cluster: str, entity: str, event_id: str) -> str:
        return f"inc-{stable_id(cluster, entity, event_id)[:12]}"

    def _find(self, keys: list[str]) -> OpenIncident | None:
        for key in keys:
            found = self._by_key.get(key)
            if found is not None:
                return found
        return None

    def _touch(self, opened: OpenIncident, at: datetime) -> None:
        opened.last_seen = max(opened.last_seen, at)
        for key in opened.keys:
            if self._by_key.get(key) is opened:
                self._by_key.move_to_end(key)

    def _alias(self, key: str, opened: OpenIncident) -> None:
        """Let ``key`` find ``opened`` too (and move with it, so expiry stays in order)."""
        if key not in opened.keys:
            opened.keys.append(key)
        self._by_key[key] = opened
        self._by_key.move_to_end(key)

    def _recent_hardware(self, node: str, at: datetime) -> OpenIncident | None:
        found = self._hardware.get(node)
        return found if found is not None and at - found.last_seen <= self.cause_window else None

    def _mark_hardware(self, opened: OpenIncident) -> None:
        """Keep ``opened`` as its node's latest hardware incident, if it is a hardware fault (an
        application Xid or a trend never is: it must not hide the hardware fault before it)."""
        if opened.node is None or not explains_stall(opened.kind, opened.xids, opened.tags):
            return
        self._hardware[opened.node] = opened
        self._hardware.move_to_end(opened.node)
        while len(self._hardware) > self.max_entries:
            self._hardware.popitem(last=False)

    def _remember(self, opened: OpenIncident, *, node_key: bool = False) -> None:
        if node_key and opened.node:
            opened.keys.append(f"node:{opened.node}")
            self._mark_hardware(opened)
        for key in opened.keys:
            self._by_key[key] = opened
            self._by_key.move_to_end(key)
        while len(self._by_key) > self.max_entries:
            self._by_key.popitem(last=False)

    def _expire(self, now: datetime) -> None:
        # Keys are ordered by last touch, so the stale ones sit at the front.
        while self._by_key:
            key, opened = next(iter(self._by_key.items()))
            if now - opened.last_seen <= self.window:
                break
            del self._by_key[key]
