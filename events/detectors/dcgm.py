"""The DCGM detector: dcgm-exporter samples in, ECC and Xid events out.

Counters are compared as deltas between scrapes, never as absolute values: a counter that drops
(volatile counters clear on a GPU reset or reboot) is re-baselined, not reported. What it reports:

- any new double-bit error (volatile or aggregate DBE count went up);
- single-bit errors arriving faster than ``sbe_per_hour``;
- retired pages reaching DCGM's soft (15) and hard (63) limits, and pages pending retirement;
- a row remap pending (and its clearing, which cancels it), a row remap failure, new uncorrectable
  remapped rows, and 512 of them (DCGM's "bad GPU" limit);
- Xids, from dcgm-exporter's windowed Xid count (a rising count is a new occurrence; a falling one
  is the window sliding);
- recurring thermal slowdown (``thermal_recurring``), from the clock-event reasons: the thermal and
  power-brake bits in 8 of the last 20 scrapes, or in 3 separate episodes within an hour
  (``events.detectors.thermal``, where the rule is argued); one blip is nothing. It rides on the ECC
  event, the DCGM detector's report of a GPU's health, so triage and pre-emptive removal read it as
  one more finding.

On first sight of a GPU only states are reported (a pending remap, a failure, a volatile DBE since
the last reset, limits already reached), not history. Event ids derive from the content, so a
restarted detector that reports the same state again is deduplicated by JetStream.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from events import dcgm_fields
from events.detectors.exposition import Sample
from events.detectors.thermal import ThermalWatch
from events.kmsg_parser import normalise_pci_bus_id
from events.models import EccEvent, EccFinding, XidEvent, stable_id

SOURCE = "dcgm"

# DCGM 4.x DcgmGPUHardwareLimits.h (via xid-and-dcgm.md).
RETIRED_PAGES_SOFT_LIMIT = 15
RETIRED_PAGES_HARD_LIMIT = 63
UNCORRECTABLE_ROWS_LIMIT = 512
DEFAULT_SBE_PER_HOUR = 1000.0

CLOCK_EVENT_REASONS = dcgm_fields.BY_NAME[dcgm_fields.CLOCKS_EVENT_REASONS].sample
FIELDS: dict[str, str] = {
    name: dcgm_fields.BY_NAME[name].sample
    for name in (*dcgm_fields.MEMORY_HEALTH, dcgm_fields.CLOCKS_EVENT_REASONS)
}
"""The fields the detector reads (memory health, clock-event reasons), and the reading each fills."""
XID_COUNT = dcgm_fields.XID_COUNT
LAST_XID = dcgm_fields.XID_ERRORS
METRIC_NAMES = frozenset({*FIELDS, XID_COUNT, LAST_XID})
NODE_LABELS = ("Hostname", "node", "kubernetes_node", "instance")

_REASONS: dict[EccFinding, str] = {
    "dbe": "new double-bit (uncorrectable) ECC error",
    "sbe_rate": "single-bit ECC errors above the rate threshold",
    "retired_pages_soft": f"retired pages reached DCGM's soft limit ({RETIRED_PAGES_SOFT_LIMIT})",
    "retired_pages_hard": f"retired pages reached DCGM's hard limit ({RETIRED_PAGES_HARD_LIMIT}): a bad GPU",
    "retired_pending": "pages pending retirement (applied at the next reset)",
    "remap_pending": "a row remap is pending; a GPU reset applies it",
    "remap_pending_cleared": "the pending row remap was applied (the GPU was reset)",
    "remap_failure": "row remapping failed: replace the GPU",
    "remap_uncorrectable": "new rows remapped for uncorrectable errors",
    "remap_rows_exhausted": f"{UNCORRECTABLE_ROWS_LIMIT} uncorrectable remapped rows: a bad GPU",
    "thermal_recurring": "recurring thermal slowdown (clock-event reasons)",
}


@dataclass
class GpuReading:
    """One GPU's DCGM fields from one scrape (``values`` keyed by the names of ``FIELDS``)."""

    node: str
    index: int
    pci_bus_id: str | None = None
    uuid: str | None = None
    values: dict[str, float] = field(default_factory=dict)
    xid_counts: dict[int, int] = field(default_factory=dict)
    last_xid: float | None = None


@dataclass
class _Seen:
    values: dict[str, float]
    xid_counts: dict[int, int]
    last_xid: float | None
    at: datetime
    xid_occurrences: int = 0


def group_samples(samples: Iterable[Sample]) -> list[GpuReading]:
    """The samples of a scrape, per GPU."""
    gpus: dict[tuple[str, int], GpuReading] = {}
    for s in samples:
        node = next((s.labels[k] for k in NODE_LABELS if s.labels.get(k)), None)
        try:
            index = int(s.labels.get("gpu", ""))
        except ValueError:
            continue
        if node is None:
            continue
        gpu = gpus.get((node, index))
        if gpu is None:
            pci = s.labels.get("pci_bus_id")
            gpu = gpus[(node, index)] = GpuReading(
                node, index, normalise_pci_bus_id(pci) if pci else None, s.labels.get("UUID")
            )
        if s.name == XID_COUNT:
            try:
                gpu.xid_counts[int(s.labels.get("xid", ""))] = int(s.value)
            except ValueError:
                continue
        elif s.name == LAST_XID:
            gpu.last_xid = s.value
        elif s.name in FIELDS:
            gpu.values[FIELDS[s.name]] = s.value
    return list(gpus.values())


class DcgmDetector:
    """Keeps the previous scrape per GPU; ``observe`` returns the events of a new scrape."""

    def __init__(
        self,
        cluster: str,
        *,
        sbe_per_hour: float = DEFAULT_SBE_PER_HOUR,
        forget_after_s: float = 3600.0,
        thermal: ThermalWatch | None = None,
    ) -> None:
        self.cluster = cluster
        self.thermal = thermal or ThermalWatch()
        self.sbe_per_hour = sbe_per_hour
        self.forget_after_s = forget_after_s
        self._seen: dict[tuple[str, int], _Seen] = {}
        self.scrapes = 0

    def observe(self, samples: Iterable[Sample], now: datetime) -> list[EccEvent | XidEvent]:
        """The events of a scrape's samples."""
        return self.observe_readings(group_samples(samples), now)

    def observe_readings(self, readings: Iterable[GpuReading], now: datetime) -> list[EccEvent | XidEvent]:
        """The events of a scrape already read per GPU (cheaper than samples on a big fleet)."""
        self.scrapes += 1
        out: list[EccEvent | XidEvent] = []
        for gpu in readings:
            key = (gpu.node, gpu.index)
            prev = self._seen.get(key)
            hot = self.thermal.observe(key, gpu.values.get(CLOCK_EVENT_REASONS), now)
            if hot is not None:
                out.append(self._ecc(gpu, ["thermal_recurring"], now, hot.reason))
            if (
                prev is not None
                and gpu.values == prev.values
                and gpu.xid_counts == prev.xid_counts
                and gpu.last_xid == prev.last_xid
            ):
                prev.at = now  # nothing moved: nothing to report (most GPUs, most scrapes)
                continue
            findings = self._findings(gpu.values, prev, now)
            if findings:
                out.append(self._ecc(gpu, findings, now))
            seen = _Seen(dict(gpu.values), dict(gpu.xid_counts), gpu.last_xid, now)
            seen.xid_occurrences = prev.xid_occurrences if prev else 0
            out += self._xids(gpu, prev, seen, now)
            self._seen[key] = seen
        stale = [k for k, s in self._seen.items() if (now - s.at).total_seconds() > self.forget_after_s]
        for k in stale:
            del self._seen[k]
        return out

    def _findings(self, cur: dict[str, float], prev: _Seen | None, now: datetime) -> list[EccFinding]:
        def val(name: str) -> float:
            return cur.get(name, 0.0)

        def delta(name: str) -> float:
            # A drop is a reset or a reboot: re-baseline, report nothing.
            if prev is None or name not in cur or name not in prev.values:
                return 0.0
            return max(0.0, cur[name] - prev.values[name])

        def was(name: str) -> float:
            return prev.values.get(name, 0.0) if prev else 0.0

        retired = val("retired_sbe") + val("retired_dbe")
        retired_before = was("retired_sbe") + was("retired_dbe")
        found: list[EccFinding] = []
        if prev is None:
            if val("dbe_volatile") > 0:
                found.append("dbe")
        elif delta("dbe_volatile") > 0 or delta("dbe_aggregate") > 0:
            found.append("dbe")
        if prev is not None:
            hours = (now - prev.at).total_seconds() / 3600.0
            sbe = max(delta("sbe_volatile"), delta("sbe_aggregate"))
            if hours > 0 and sbe / hours > self.sbe_per_hour:
                found.append("sbe_rate")
        if retired >= RETIRED_PAGES_HARD_LIMIT > (retired_before if prev else 0):
            found.append("retired_pages_hard")
        elif retired >= RETIRED_PAGES_SOFT_LIMIT > (retired_before if prev else 0):
            found.append("retired_pages_soft")
        if val("retired_pending") > 0 and (prev is None or was("retired_pending") == 0):
            found.append("retired_pending")
        if val("remap_pending") > 0 and (prev is None or was("remap_pending") == 0):
            found.append("remap_pending")
        elif prev is not None and val("remap_pending") == 0 and was("remap_pending") > 0:
            found.append("remap_pending_cleared")
        if val("remap_failure") > 0 and (prev is None or was("remap_failure") == 0):
            found.append("remap_failure")
        if delta("remap_uncorrectable") > 0:
            found.append("remap_uncorrectable")
        if (
            val("remap_uncorrectable")
            >= UNCORRECTABLE_ROWS_LIMIT
            > (was("remap_uncorrectable") if prev else 0)
        ):
            found.append("remap_rows_exhausted")
        return found

    def _ecc(self, gpu: GpuReading, findings: list[EccFinding], now: datetime, why: str = "") -> EccEvent:
        v = {k: int(x) for k, x in gpu.values.items()}
        return EccEvent(
            event_id=stable_id(self.cluster, gpu.node, gpu.index, "ecc", *findings, *sorted(v.items())),
            time=now,
            cluster=self.cluster,
            source=SOURCE,
            node=gpu.node,
            gpu=gpu.index,
            pci_bus_id=gpu.pci_bus_id,
            uuid=gpu.uuid,
            findings=findings,
            reason=why or "; ".join(_REASONS[f] for f in findings),
            **v,
        )

    def _xids(self, gpu: GpuReading, prev: _Seen | None, seen: _Seen, now: datetime) -> list[XidEvent]:
        new: list[tuple[int, int]] = []
        if gpu.xid_counts or (prev is not None and prev.xid_counts):
            for code, count in sorted(gpu.xid_counts.items()):
                before = prev.xid_counts.get(code, 0) if prev else 0
                if count > before:
                    new.append((code, count - before))
        elif gpu.last_xid and (prev is None or gpu.last_xid != prev.last_xid):
            # Exporters without the windowed count: the last-Xid gauge changing is a new Xid.
            new.append((int(gpu.last_xid), 1))
        events = []
        for code, count in new:
            seen.xid_occurrences += 1
            events.append(
                XidEvent(
                    event_id=stable_id(self.cluster, gpu.node, gpu.index, "xid", code, seen.xid_occurrences),
                    time=now,
                    cluster=self.cluster,
                    source=SOURCE,
                    node=gpu.node,
                    gpu=gpu.index,
                    pci_bus_id=gpu.pci_bus_id,
                    xid=code,
                    message=f"dcgm-exporter counted {count} new Xid {code} on GPU {gpu.index}",
                )
            )
        return events
