"""Groups events of every kind into incidents.

- Deduplication per entity within a window: a GPU (by PCI id and by index: the kernel log, DCGM and
  heartbeats name GPUs differently), a job for hangs and slowdowns, a shared part for topology.
  The window runs on event time and extends while the entity keeps reporting.
- Sympathetic Xids join the incident of their cause instead of opening their own: 45 ("caused by
  previous Xid"), 94/95 beside another Xid or ECC error on the GPU, 154 with its recovery action.
- Across kinds: an ECC error joins the Xid 48 of the same GPU; a hang or slow rank on a node that
  has an open hardware incident joins it (the hardware is the cause). Only a hardware fault may
  explain a hang (``agents.grouping.explains_stall``): a hang never joins an application Xid.
- A later signal can cancel an earlier fault: a pending row remap that cleared, a Xid 154 that now
  says "None", a hang that resumed, a job back at its baseline speed.
- Repeated offenders (``agents.offenders``) and topology (``agents.topology``).

Pure and synchronous (no I/O): the agent feeds it events in order and persists what it decides.
Memory is bounded: entries expire with the window and the tables are capped (oldest out first).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from agents.grouping import explains_stall, hardware_xid, node_wide
from agents.offenders import OffenderLedger, Repeat
from agents.topology import Signal, SignalClass, TopologyCorrelator, Verdict
from events.fabric import FabricMap, Part
from events.gpu_ref import GpuRef
from events.models import AnyEvent, EccEvent, HangEvent, NumericsEvent, ThroughputEvent, XidEvent, stable_id
from skills.catalog import XidLevel, load_catalog

SYMPATHETIC_XIDS = frozenset({45})
"""Xids that report the aftermath of another fault; they never open an incident while a cause is open."""
BESIDE_ANOTHER = frozenset({94, 95})
"""Memory errors that usually sit beside another memory Xid (48, 63, 64, 140) on the same GPU."""
SUMMARY_XIDS = frozenset({154})
"""The driver's summary of what the GPU needs; it joins the incident it summarises."""
LINK_XIDS = frozenset({74})
"""NVLink errors: topology signals when the node's NVLink domain spans several nodes."""

CorrelationKind = Literal["new", "duplicate", "joined", "cancel", "ignored"]


def gpu_entity(event: XidEvent) -> str:
    """The entity an Xid is about: the GPU (by PCI id, else index), the NVSwitch, else the node."""
    if event.sxid and event.nvswitch:
        return f"{event.node}/{event.nvswitch}"
    if event.pci_bus_id:
        return f"{event.node}/{event.pci_bus_id}"
    if event.gpu is not None:
        return GpuRef(event.node, event.gpu).entity_id
    return event.node


_GPU_INDEX_NAME = re.compile(r"/gpu\d+$")


def gpu_keys(node: str, gpu: int | None, pci_bus_id: str | None) -> list[str]:
    """Every name of one GPU (PCI id, index), so sources that name it differently meet."""
    keys = []
    if pci_bus_id:
        keys.append(f"{node}/{pci_bus_id}")
    if gpu is not None:
        keys.append(GpuRef(node, gpu).entity_id)
    return keys or [node]


def _xid_keys(event: XidEvent) -> list[str]:
    if event.sxid and event.nvswitch:
        return [f"{event.node}/{event.nvswitch}"]
    return gpu_keys(event.node, event.gpu, event.pci_bus_id)


def _fault_keys(keys: list[str]) -> tuple[str, ...]:
    """The names of a GPU fault to claim across replicas: the GPU's, not its node's (the node key
    only lets a hang on the node find the hardware incident; another GPU is another fault).

    The first name is the one the claim is decided on (``agents.claims``), so it must not depend on
    which names a source happens to give: the index name (``node/gpu3``) comes first whenever it is
    known. (A kernel line carries the PCI id and the resolved index, a DCGM reading only the index:
    with the PCI name first, two replicas seeing the two at once each won a different first name.)"""
    names = [k for k in keys if not k.startswith("node:")]
    return tuple(sorted(names, key=lambda k: 0 if _GPU_INDEX_NAME.search(k) else 1))


@dataclass
class _Open:
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


class Correlator:
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
        self._by_key: OrderedDict[str, _Open] = OrderedDict()
        self._parent: OrderedDict[str, str] = OrderedDict()
        # The latest hardware incident of each node, kept longer than the dedupe window: a hang or
        # slow rank on that node within the hour (after a drain, a reset, a restart) is its doing.
        self._hardware: OrderedDict[str, _Open] = OrderedDict()
        # Per node and Xid code, the GPUs that reported it lately (a node-wide fault is one incident).
        self._node_gpus: OrderedDict[tuple[str, int], OrderedDict[str, tuple[_Open, datetime]]] = (
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

    def assign(self, event: AnyEvent) -> Correlation:
        self._expire(event.time)
        if isinstance(event, XidEvent):
            return self._xid(event)
        if isinstance(event, EccEvent):
            return self._ecc(event)
        if isinstance(event, HangEvent):
            return self._hang(event)
        if isinstance(event, NumericsEvent):
            return self._numerics(event)
        return self._throughput(event)

    def track(self, incident_id: str, entity: str, node: str, last_seen: datetime, xids: set[int]) -> None:
        """Re-learn an open incident (after a restart, from the store), with its node, so the hangs a
        hardware incident explains still join it."""
        self._remember(_Open(incident_id, "xid", node, last_seen, [entity], set(xids)), node_key=True)

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

    def _node_wide(self, event: XidEvent, opened: _Open) -> Correlation | None:
        """The same hardware Xid on most GPUs of one node at once: one node-level incident that
        folds the per-GPU ones (NVSwitch, baseboard, power or driver, not eight GPUs)."""
        code, node = event.xid, event.node
        group = f"nodewide:{node}:{code}"
        whole = self._by_key.get(group)
        if whole is not None:
            for key in opened.keys:
                self._alias(key, whole)
            self._touch(whole, event.time)
            return self._join(whole, f"Xid {code} on {opened.keys[0]} too: the node-wide fault")
        seen = self._node_gpus.setdefault((node, code), OrderedDict())
        self._node_gpus.move_to_end((node, code))
        for key, (_, at) in list(seen.items()):
            if event.time - at > self.window:
                del seen[key]
        seen[opened.keys[-1]] = (opened, event.time)
        while len(self._node_gpus) > self.max_entries:
            self._node_gpus.popitem(last=False)
        if not node_wide(len(seen), self.gpus_per_node):
            return None
        node_id = self._new_id(event.cluster, group, event.event_id)
        whole = _Open(node_id, "node", node, event.time, [group], {code})
        earlier = [o for o, _ in seen.values() if o is not opened]
        for member in [*earlier, opened]:
            for key in member.keys:
                if not key.startswith("node:"):
                    self._alias(key, whole)
        for member in earlier:
            self._parent[member.incident_id] = node_id
        self._remember(whole, node_key=True)
        del self._node_gpus[(node, code)]
        why = (
            f"Xid {code} on {len(seen)} of {self.gpus_per_node} GPUs of {node} at once: the node is at fault"
        )
        return Correlation(
            node_id, "new", why, "node", folds=tuple(o.incident_id for o in earlier), keys=(group,)
        )

    # -- Xid and ECC: one GPU ------------------------------------------------------------------------

    def _xid(self, event: XidEvent) -> Correlation:
        keys = _xid_keys(event)
        current = self._find(keys)
        code = event.xid
        if code in SYMPATHETIC_XIDS or event.caused_by_xid is not None:
            cause = current or self._find([f"node:{event.node}"])
            if cause is not None:
                self._touch(cause, event.time)
                why = f"Xid {code} follows Xid {event.caused_by_xid}" if event.caused_by_xid else ""
                return self._join(cause, why or f"Xid {code} is sympathetic")
        if code in BESIDE_ANOTHER and current is not None and (current.xids - BESIDE_ANOTHER or current.tags):
            self._touch(current, event.time)
            if code in current.xids:
                return self._duplicate(current, f"Xid {code} on {keys[0]} again")
            current.xids.add(code)
            return self._join(current, f"Xid {code} beside Xid(s) {sorted(current.xids - {code})} on the GPU")
        if code in SUMMARY_XIDS and current is None:
            current = self._find([f"node:{event.node}"])
        if code in SUMMARY_XIDS and current is not None:
            self._touch(current, event.time)
            earlier, current.recovery_action = current.recovery_action, event.recovery_action
            current.xids.add(code)
            if event.recovery_action == "None" and earlier not in (None, "None"):
                return Correlation(
                    self._root(current.incident_id),
                    "cancel",
                    f"Xid 154 now says no recovery is needed (it said {earlier!r})",
                )
            return self._join(current, f"Xid 154 summarises the GPU's recovery: {event.recovery_action}")
        if current is not None:
            self._touch(current, event.time)
            if code in current.xids:
                return self._duplicate(current, f"Xid {code} on {keys[0]} again")
            current.xids.add(code)
            self._mark_hardware(current)
            return self._join(current, f"Xid {code} on the same GPU")
        kind = "sxid" if event.sxid else "xid"
        incident_id = self._new_id(event.cluster, keys[0], event.event_id)
        opened = _Open(incident_id, kind, event.node, event.time, keys, {code}, set(), event.recovery_action)
        info = load_catalog().info_or_unknown(code)
        repeat = (
            None if event.sxid else self.offenders.record_xid(keys[-1], code, event.time, info.escalate_after)
        )
        if repeat is None and info.level is XidLevel.HARDWARE and info.known:
            repeat = self.offenders.record([keys[-1], event.node], event.time)
        gpu_fault = not event.sxid and hardware_xid(code) and keys != [event.node]
        if gpu_fault:
            whole = self._node_wide(event, opened)
            if whole is not None:
                return whole
        place = self.fabric.place(event.node)
        domain = place.nvlink_domain if place else None
        if code in LINK_XIDS and domain and len(self.fabric.members(("nvlink_domain", domain))) > 1:
            # Several nodes share this NVLink domain: wait and see whether their neighbours fail too.
            summary = f"Xid {code} (NVLink) on {keys[0]}"
            verdict = self._signal(event, "nvlink", (event.node,), None, incident_id, summary)
            if verdict is not None:
                return self._to_shared(verdict, event.time, f"xid{code}", keys)
            self._remember(opened, node_key=True)
            return Correlation(
                incident_id, "new", f"first Xid {code} on {keys[0]}", kind, hold=True, keys=_fault_keys(keys)
            )
        self._remember(opened, node_key=True)
        # A hardware fault waits a moment for the node's other GPUs: the same fault on most of
        # them at once is one node-level incident (agents.grouping.node_wide).
        return Correlation(
            incident_id,
            "new",
            f"first Xid {code} on {keys[0]}",
            kind,
            repeat=repeat,
            hold=gpu_fault,
            keys=_fault_keys(keys),
        )

    def _ecc(self, event: EccEvent) -> Correlation:
        keys = gpu_keys(event.node, event.gpu, event.pci_bus_id)
        current = self._find(keys)
        findings: set[str] = set(event.findings)
        if findings and findings <= {"remap_pending_cleared"}:
            if current is None:
                return Correlation("", "ignored", "a pending row remap cleared; no open incident on the GPU")
            self._touch(current, event.time)
            current.tags.discard("remap_pending")
            return Correlation(self._root(current.incident_id), "cancel", "the pending row remap was applied")
        if current is not None:
            self._touch(current, event.time)
            fresh = findings - current.tags
            current.tags |= findings
            if not fresh:
                return self._duplicate(current, f"ECC on {keys[-1]} again")
            self._mark_hardware(current)
            return self._join(current, f"ECC {', '.join(sorted(fresh))} on the same GPU")
        incident_id = self._new_id(event.cluster, keys[-1], event.event_id)
        self._remember(_Open(incident_id, "ecc", event.node, event.time, keys, tags=findings), node_key=True)
        repeat = None
        if findings - {"sbe_rate", "retired_pages_soft", "thermal_recurring"}:  # trends, not faults
            repeat = self.offenders.record([keys[-1], event.node], event.time)
        return Correlation(
            incident_id,
            "new",
            f"ECC {', '.join(event.findings)} on {keys[-1]}",
            "ecc",
            repeat=repeat,
            keys=_fault_keys(keys),
        )

    # -- hangs and slowdowns: one job ----------------------------------------------------------------

    def _hang(self, event: HangEvent) -> Correlation:
        job_key = f"job:{event.job}"
        current = self._find([job_key])
        if event.resumed:
            if current is None or "hang" not in current.tags:
                return Correlation("", "ignored", f"{event.job} progresses again; no open hang")
            self._touch(current, event.time)
            current.tags.discard("hang")
            return Correlation(self._root(current.incident_id), "cancel", f"{event.job} progresses again")
        summary = (
            f"{event.job} hung at step {event.last_step}, first stalled on {', '.join(event.nodes) or '?'}"
        )
        return self._job_signal(
            event, current, "hang", "network", tuple(event.nodes), summary, decisive=False
        )

    def _throughput(self, event: ThroughputEvent) -> Correlation:
        job_key = f"job:{event.job}"
        current = self._find([job_key])
        if event.recovered:
            if current is None or "slow" not in current.tags:
                return Correlation("", "ignored", f"{event.job} is back at baseline; no open slowdown")
            self._touch(current, event.time)
            current.tags.discard("slow")
            return Correlation(
                self._root(current.incident_id), "cancel", f"{event.job} is back at its baseline"
            )
        where = ", ".join(event.suspect_switches or event.suspect_nodes) or "no suspect"
        summary = f"{event.job} {event.slowdown:.2f}x slower ({event.signature or 'unattributed'}: {where})"
        if event.signature == "network":
            parts: tuple[Part, ...] = tuple(("switch", s) for s in event.suspect_switches)
            nodes = tuple(event.suspect_nodes or event.nodes)
            return self._job_signal(
                event, current, "slow", "network", nodes, summary, parts, decisive=len(parts) == 1
            )
        if event.signature == "straggler":
            return self._job_signal(event, current, "slow", "compute", tuple(event.suspect_nodes), summary)
        return self._job_signal(event, current, "slow", None, (), summary)

    def _numerics(self, event: NumericsEvent) -> Correlation:
        """Suspected silent data corruption: one incident per job episode; a later numerics event of
        the job joins it, ``cleared`` cancels it (like a slowdown's recovery)."""
        job_key = f"job:{event.job}"
        current = self._find([job_key])
        if event.cleared:
            if current is None or "numerics" not in current.tags:
                return Correlation("", "ignored", f"{event.job}'s numerics are back in range; nothing open")
            self._touch(current, event.time)
            current.tags.discard("numerics")
            return Correlation(
                self._root(current.incident_id), "cancel", f"{event.job}'s numerics are back in range"
            )
        summary = f"{event.job}: {event.signature} at step {event.first_bad_step}"
        if event.suspect_gpus:
            summary += f" (suspect {', '.join(event.suspect_gpus)})"
        if current is not None:
            self._touch(current, event.time)
            if "numerics" in current.tags:
                return self._duplicate(current, f"{summary} again")
            current.tags.add("numerics")
            return self._join(current, summary)
        incident_id = self._new_id(event.cluster, job_key, event.event_id)
        self._remember(_Open(incident_id, "numerics", None, event.time, [job_key], tags={"numerics"}))
        return Correlation(incident_id, "new", summary, "numerics", keys=(job_key,))

    def _job_signal(
        self,
        event: HangEvent | ThroughputEvent,
        current: _Open | None,
        tag: str,
        klass: SignalClass | None,
        nodes: tuple[str, ...],
        summary: str,
        parts: tuple[Part, ...] | None = None,
        *,
        decisive: bool = False,
    ) -> Correlation:
        job_key = f"job:{event.job}"
        if current is not None:
            self._touch(current, event.time)
            fresh = tag not in current.tags
            current.tags.add(tag)
            if fresh:
                return self._join(current, summary)
            return self._duplicate(current, f"{event.job} again: {summary}")
        # A node with an open hardware incident explains a hang or a slow rank on it.
        for suspect in nodes if len(nodes) <= 2 else ():
            cause = self._find([f"node:{suspect}"])
            if cause is None or not explains_stall(cause.kind, cause.xids, cause.tags):
                cause = self._recent_hardware(suspect, event.time)
            if cause is not None and explains_stall(cause.kind, cause.xids, cause.tags):
                self._touch(cause, event.time)
                cause.tags.add(tag)
                self._alias(job_key, cause)
                return self._join(cause, f"{summary}; {suspect} already has a hardware incident")
        if len(nodes) > 2:
            # Every rank stopped at once: a hardware fault open on exactly one node of them explains it.
            causes = {
                c.incident_id: c
                for n in nodes
                if (c := self._find([f"node:{n}"])) is not None and explains_stall(c.kind, c.xids, c.tags)
            }
            if len(causes) == 1:
                [cause] = causes.values()
                self._touch(cause, event.time)
                cause.tags.add(tag)
                self._alias(job_key, cause)
                return self._join(cause, f"{summary}; {cause.node} has an open hardware incident")
        incident_id = self._new_id(event.cluster, job_key, event.event_id)
        node = nodes[0] if len(nodes) == 1 else None
        opened = _Open(incident_id, event.kind, node, event.time, [job_key], tags={tag})
        if klass is not None and nodes:
            verdict = self._signal(
                event, klass, nodes, parts, incident_id, summary, job=event.job, decisive=decisive
            )
            if verdict is not None:
                return self._to_shared(verdict, event.time, tag, [job_key])
        self._remember(opened)
        repeat = None
        if klass is not None and len(nodes) == 1:
            repeat = self.offenders.record([nodes[0]], event.time)
        return Correlation(incident_id, "new", summary, event.kind, hold=True, repeat=repeat, keys=(job_key,))

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
            shared = _Open(verdict.incident_id, kind, None, at, [part_key])
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

    def _join(self, current: _Open, reason: str) -> Correlation:
        return Correlation(self._root(current.incident_id), "joined", reason)

    def _duplicate(self, current: _Open, reason: str) -> Correlation:
        return Correlation(self._root(current.incident_id), "duplicate", reason)

    @staticmethod
    def _new_id(cluster: str, entity: str, event_id: str) -> str:
        return f"inc-{stable_id(cluster, entity, event_id)[:12]}"

    def _find(self, keys: list[str]) -> _Open | None:
        for key in keys:
            found = self._by_key.get(key)
            if found is not None:
                return found
        return None

    def _touch(self, opened: _Open, at: datetime) -> None:
        opened.last_seen = max(opened.last_seen, at)
        for key in opened.keys:
            if self._by_key.get(key) is opened:
                self._by_key.move_to_end(key)

    def _alias(self, key: str, opened: _Open) -> None:
        """Let ``key`` find ``opened`` too (and move with it, so expiry stays in order)."""
        if key not in opened.keys:
            opened.keys.append(key)
        self._by_key[key] = opened
        self._by_key.move_to_end(key)

    def _recent_hardware(self, node: str, at: datetime) -> _Open | None:
        found = self._hardware.get(node)
        return found if found is not None and at - found.last_seen <= self.cause_window else None

    def _mark_hardware(self, opened: _Open) -> None:
        """Keep ``opened`` as its node's latest hardware incident, if it is a hardware fault (an
        application Xid or a trend never is: it must not hide the hardware fault before it)."""
        if opened.node is None or not explains_stall(opened.kind, opened.xids, opened.tags):
            return
        self._hardware[opened.node] = opened
        self._hardware.move_to_end(opened.node)
        while len(self._hardware) > self.max_entries:
            self._hardware.popitem(last=False)

    def _remember(self, opened: _Open, *, node_key: bool = False) -> None:
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
