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

The Xid and ECC paths (one GPU, or a whole node) are here; the job-level paths (hangs, slowdowns,
numerics) are in ``agents.job_correlation``, the open incidents and their keys in
``agents.incident_book``.

Pure and synchronous (no I/O): the agent feeds it events in order and persists what it decides.
Memory is bounded: entries expire with the window and the tables are capped (oldest out first).
"""

from __future__ import annotations

import re
from collections import OrderedDict

from agents.grouping import hardware_xid, node_wide
from agents.incident_book import Correlation, CorrelationKind, OpenIncident
from agents.job_correlation import JobCorrelator
from events.gpu_ref import GpuRef
from events.models import AnyEvent, EccEvent, HangEvent, NumericsEvent, XidEvent
from skills.catalog import XidLevel, load_catalog

__all__ = [
    "BESIDE_ANOTHER",
    "LINK_XIDS",
    "SUMMARY_XIDS",
    "SYMPATHETIC_XIDS",
    "Correlation",
    "CorrelationKind",
    "Correlator",
    "gpu_entity",
    "gpu_keys",
]

SYMPATHETIC_XIDS = frozenset({45})
"""Xids that report the aftermath of another fault; they never open an incident while a cause is open."""
BESIDE_ANOTHER = frozenset({94, 95})
"""Memory errors that usually sit beside another memory Xid (48, 63, 64, 140) on the same GPU."""
SUMMARY_XIDS = frozenset({154})
"""The driver's summary of what the GPU needs; it joins the incident it summarises."""
LINK_XIDS = frozenset({74})
"""NVLink errors: topology signals when the node's NVLink domain spans several nodes."""


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


class Correlator(JobCorrelator):
    """Assigns each event to an incident: a new one, a duplicate, a join, a cancel, or nothing."""

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

    def _node_wide(self, event: XidEvent, opened: OpenIncident) -> Correlation | None:
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
        whole = OpenIncident(node_id, "node", node, event.time, [group], {code})
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
        opened = OpenIncident(
            incident_id, kind, event.node, event.time, keys, {code}, set(), event.recovery_action
        )
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
        self._remember(
            OpenIncident(incident_id, "ecc", event.node, event.time, keys, tags=findings), node_key=True
        )
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
