"""Topology correlation: concurrent faults on many nodes that share one part become one incident.

A leaf switch that drops packets makes every job crossing it slow down or hang at once; paging
once per job (and swapping 40 healthy nodes) buries the one root cause. Each job-level signal (a
hang, a slowdown, an NVLink error) names the shared parts it could come from: the leaf switches,
racks and NVLink domains of the nodes it implicates. When signals from at least ``min_origins``
different jobs (or nodes, for node-level signals) point at the same part within ``window_s`` —
or one network slowdown names a single switch — that part is blamed in ONE incident, and the
incidents those signals opened fold into it. Later signals naming the part join it directly.

Which part, when several fit: the one that explains the most signals; then the part kind that
fits the kind of signal (switches for network faults, racks for thermal ones, NVLink domains for
NVLink errors); then the smallest part (fewest nodes under it).

Pure and synchronous, on event time, with bounded memory; ``load_fabric`` learns the placement of
nodes through the read-only ``list_nodes`` MCP tool, as every other fact the agent uses.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from contracts.client import ToolClient
from events.fabric import FabricMap, NodePlace, Part, PartKind

SignalClass = Literal["network", "compute", "nvlink"]

PREFERENCE: dict[SignalClass, tuple[PartKind, ...]] = {
    "network": ("switch", "nvlink_domain", "rack"),
    "compute": ("rack", "switch", "nvlink_domain"),
    "nvlink": ("nvlink_domain", "switch", "rack"),
}
PART_LABEL: dict[PartKind, str] = {"switch": "leaf switch", "rack": "rack", "nvlink_domain": "NVLink domain"}


@dataclass(frozen=True)
class Signal:
    """One job-level (or node-level) fault, with the shared parts it could come from."""

    time: datetime
    klass: SignalClass
    nodes: tuple[str, ...]
    parts: tuple[Part, ...]
    summary: str
    job: str | None = None
    incident_id: str = ""
    decisive: bool = False
    """The signal alone names its part (a network slowdown whose ranks all sit under one switch)."""

    @property
    def origin(self) -> str:
        return f"job:{self.job}" if self.job else f"node:{','.join(self.nodes)}"


@dataclass(frozen=True)
class Verdict:
    """A shared part blamed: the incident that holds it and the incidents that fold into it."""

    part: Part
    incident_id: str
    new: bool
    folds: tuple[str, ...]
    nodes: tuple[str, ...]
    jobs: tuple[str, ...]
    evidence: tuple[str, ...]
    reason: str


@dataclass
class _Shared:
    incident_id: str
    last_seen: datetime
    folded: set[str] = field(default_factory=set)


class TopologyCorrelator:
    def __init__(
        self,
        fabric: FabricMap | None = None,
        *,
        window_s: float = 600.0,
        min_origins: int = 2,
        max_signals: int = 10_000,
    ) -> None:
        self.fabric = fabric or FabricMap()
        self.window = timedelta(seconds=window_s)
        self.min_origins = min_origins
        self._signals: deque[Signal] = deque(maxlen=max_signals)
        self._shared: OrderedDict[Part, _Shared] = OrderedDict()

    def parts_of(self, nodes: tuple[str, ...] | list[str], klass: SignalClass) -> tuple[Part, ...]:
        """The shared parts over ``nodes`` worth suspecting for a ``klass`` signal."""
        kinds = PREFERENCE[klass]
        found = {part for node in nodes for part in self.fabric.parts(node)}
        if klass == "nvlink":  # an NVLink error is about the NVLink domain, never a switch or rack
            found = {p for p in found if p[0] == "nvlink_domain"}
        return tuple(sorted(found, key=lambda p: (kinds.index(p[0]), p[1])))

    def observe(self, signal: Signal, new_id: Callable[[Part], str]) -> Verdict | None:
        """Record ``signal``; a verdict when it joins or creates a shared-part incident."""
        self._expire(signal.time)
        for part in signal.parts:
            shared = self._shared.get(part)
            if shared is not None:
                shared.last_seen = max(shared.last_seen, signal.time)
                self._shared.move_to_end(part)
                self._signals.append(signal)
                # The signal's own incident is never opened: the event goes to the shared one.
                shared.folded.add(signal.incident_id)
                why = f"{signal.summary}; joins {self._name(part)}"
                return self._verdict(part, shared, False, (), why)
        self._signals.append(signal)
        best: tuple[tuple[int, int, int], Part, list[Signal]] | None = None
        for part in signal.parts:
            group = [s for s in self._signals if part in s.parts]
            origins = {s.origin for s in group}
            qualifies = len(origins) >= self.min_origins or (
                signal.decisive and sum(1 for p in signal.parts if p[0] == part[0]) == 1
            )
            if not qualifies:
                continue
            rank = (
                len(origins),
                -PREFERENCE[signal.klass].index(part[0]),
                -len(self.fabric.members(part)),
            )
            if best is None or rank > best[0]:
                best = (rank, part, group)
        if best is None:
            return None
        _, part, group = best
        shared = _Shared(new_id(part), signal.time)
        self._shared[part] = shared
        shared.folded.add(signal.incident_id)
        folds = self._fold(shared, group)
        jobs = sorted({s.job for s in group if s.job})
        why = (
            f"{len({s.origin for s in group})} concurrent signals ({', '.join(jobs) or 'nodes'}) share "
            f"{self._name(part)}"
            if len(group) > 1
            else f"{signal.summary}: every slow rank sits under {self._name(part)}"
        )
        return self._verdict(part, shared, True, folds, why, group)

    def _fold(self, shared: _Shared, signals: list[Signal]) -> tuple[str, ...]:
        folds = []
        for s in signals:
            if s.incident_id and s.incident_id != shared.incident_id and s.incident_id not in shared.folded:
                shared.folded.add(s.incident_id)
                folds.append(s.incident_id)
        return tuple(folds)

    def _verdict(
        self,
        part: Part,
        shared: _Shared,
        new: bool,
        folds: tuple[str, ...],
        reason: str,
        group: list[Signal] | None = None,
    ) -> Verdict:
        group = group if group is not None else [s for s in self._signals if part in s.parts][-1:]
        members = self.fabric.members(part)
        return Verdict(
            part=part,
            incident_id=shared.incident_id,
            new=new,
            folds=folds,
            # The implicated nodes under the part (a job crossing two leaves implicates both).
            nodes=tuple(sorted({n for s in group for n in s.nodes if not members or n in members})),
            jobs=tuple(sorted({s.job for s in group if s.job})),
            evidence=tuple(s.summary for s in group[-20:]),
            reason=reason,
        )

    def _name(self, part: Part) -> str:
        members = len(self.fabric.members(part))
        return f"{PART_LABEL[part[0]]} {part[1]}" + (f" ({members} nodes under it)" if members else "")

    def _expire(self, now: datetime) -> None:
        while self._signals and now - self._signals[0].time > self.window:
            self._signals.popleft()
        stale = [p for p, s in self._shared.items() if now - s.last_seen > self.window]
        for part in stale:
            del self._shared[part]


async def load_fabric(tools: ToolClient, *, page_size: int = 500) -> FabricMap:
    """Learn every node's leaf switch and rack (and NVLink clique label) through ``list_nodes``."""
    fabric = FabricMap()
    cursor: str | None = None
    while True:
        args: dict[str, Any] = {"limit": page_size}
        if cursor:
            args["cursor"] = cursor
        page = await tools.call("list_nodes", args)
        if not page.ok or not isinstance(page.structured, dict):
            raise RuntimeError(f"list_nodes failed: {page.text}")
        for node in page.structured.get("nodes", []):
            labels = node.get("labels") or {}
            fabric.add(
                NodePlace(
                    node=node["name"],
                    leaf=node.get("leaf_switch") or None,
                    rack=node.get("rack") or None,
                    nvlink_domain=labels.get("nvidia.com/gpu.clique") or None,
                )
            )
        cursor = page.structured.get("next_cursor")
        if not cursor:
            return fabric
