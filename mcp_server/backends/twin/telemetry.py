"""Telemetry of the fleet twin: its DCGM counters, sampled into a bounded history, and its kernel log.

The twin only knows the present, so this source keeps what the tools ask windows of: snapshots of
every GPU's counters (at most one per ``sample_every_s`` simulated seconds, within a memory budget:
a big fleet keeps fewer snapshots), and every Xid its kernel log reports, parsed by the same parser
the events service uses. ``sample()`` is cheap to call often; ``run()`` samples on a wall-clock
cadence for a server that runs the twin's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
from array import array
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from events import dcgm_fields
from events.kmsg_parser import KmsgParser
from fleet import FleetTwin
from fleet.telemetry import GpuCounters
from mcp_server.backends.base import BackendError, NotFound
from mcp_server.backends.telemetry import MAX_POINTS
from mcp_server.metrics import (
    DCGM_FIELDS,
    EccCounters,
    GpuFaults,
    MetricSeries,
    PromqlResult,
    Sample,
    StepCount,
    XidOccurrence,
    judge_ecc,
)
from skills.catalog import load_catalog

# DCGM fields the twin's counters hold directly (its exporter derives SM clock and engine activity).
SAMPLED: dict[str, str] = {
    name: dcgm_fields.BY_NAME[name].sample
    for name in (
        dcgm_fields.GPU_TEMP,
        dcgm_fields.MEMORY_TEMP,
        dcgm_fields.POWER_USAGE,
        dcgm_fields.CLOCKS_EVENT_REASONS,
        dcgm_fields.XID_ERRORS,
        dcgm_fields.ECC_SBE_VOL,
        dcgm_fields.ECC_DBE_VOL,
        dcgm_fields.ECC_SBE_AGG,
        dcgm_fields.ECC_DBE_AGG,
        dcgm_fields.ROW_REMAP_PENDING,
    )
}
_ATTRS = list(SAMPLED.values())
_COLUMN = {name: i for i, name in enumerate(SAMPLED)}
DEFAULT_VALUE_BUDGET = 4_000_000  # 32 MB of float64 across all snapshots
MAX_SNAPSHOTS = 1440
MAX_XIDS = 20_000
DUPLICATE_WITHIN_S = 1.0


@dataclass
class _Snapshot:
    time: datetime
    values: array[float]  # GPU-major: values[gpu_slot * len(SAMPLED) + column]; NaN = not reporting
    steps: dict[str, int]


class TwinTelemetry:
    def __init__(
        self,
        twin: FleetTwin,
        *,
        sample_every_s: float = 60.0,
        value_budget: int = DEFAULT_VALUE_BUDGET,
    ) -> None:
        self.twin = twin
        self.sample_every_s = sample_every_s
        self._slots = {
            key: slot
            for slot, key in enumerate((n.name, g.index) for n in twin.nodes.values() for g in n.gpus)
        }
        per_snapshot = max(1, len(self._slots) * len(SAMPLED))
        self._snapshots: deque[_Snapshot] = deque(
            maxlen=max(2, min(MAX_SNAPSHOTS, value_budget // per_snapshot))
        )
        self._xids: deque[XidOccurrence] = deque(maxlen=MAX_XIDS)
        self._parsers: dict[str, KmsgParser] = {}
        self._last_seen: dict[tuple[str, int | None, int], datetime] = {}
        self._catalog = load_catalog()
        self._unsubscribe = twin.subscribe_kmsg(self._on_kmsg)

    @property
    def kind(self) -> str:
        return "twin"

    @property
    def history_s(self) -> float:
        """How far back the snapshots can reach at the current cadence."""
        return (self._snapshots.maxlen or 0) * self.sample_every_s

    def close(self) -> None:
        self._unsubscribe()

    # -- recording ------------------------------------------------------------------------------

    def _on_kmsg(self, node: str, line: str) -> None:
        parser = self._parsers.setdefault(node, KmsgParser())
        for record in parser.feed(line):
            if record.sxid:
                continue
            gpu = self.twin.gpu_index(node, record.pci_bus_id) if record.pci_bus_id else None
            at = record.time or self.twin.now()
            key = (node, gpu, record.xid)
            # One fault prints several lines (Xid 79 also says "fallen off the bus"): one occurrence.
            last = self._last_seen.get(key)
            self._last_seen[key] = at
            if last is not None and abs((at - last).total_seconds()) < DUPLICATE_WITHIN_S:
                continue
            self._xids.append(
                XidOccurrence(
                    time=at,
                    node=node,
                    gpu=gpu,
                    xid=record.xid,
                    mnemonic=self._catalog.info_or_unknown(record.xid).mnemonic,
                    message=record.message[:300],
                )
            )

    def sample(self, *, force: bool = False) -> bool:
        """Record a snapshot of every GPU unless the newest is younger than ``sample_every_s``."""
        now = self.twin.now()
        if not force and self._snapshots:
            age = (now - self._snapshots[-1].time).total_seconds()
            if age < self.sample_every_s:
                return False
        width = len(SAMPLED)
        values = array("d", [math.nan]) * (len(self._slots) * width)
        counters = self.twin.telemetry.gpus
        for node in self.twin.nodes.values():
            if node.state != "ready":
                continue  # like dcgm-exporter, a node that is down reports nothing
            for gpu in node.gpus:
                if gpu.health == "fallen_off_bus":
                    continue
                c = counters[(node.name, gpu.index)]
                base = self._slots[(node.name, gpu.index)] * width
                for column, attr in enumerate(_ATTRS):
                    values[base + column] = float(getattr(c, attr))
        steps = {job.name: job.step for job in self.twin.jobs.values()}
        self._snapshots.append(_Snapshot(time=now, values=values, steps=steps))
        return True

    async def run(self, stop: asyncio.Event, every_wall_s: float = 1.0) -> None:
        """Sample until ``stop`` is set (the twin's clock runs elsewhere)."""
        while not stop.is_set():
            self.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_wall_s)

    # -- queries --------------------------------------------------------------------------------

    def _counters(self, node: str, gpu: int) -> GpuCounters:
        return self.twin.telemetry.counters(node, gpu)

    def _node_gpus(self, node: str, gpus: Sequence[int] | None) -> list[int]:
        if node not in self.twin.nodes:
            names = list(self.twin.nodes)
            raise NotFound(f"no node named {node!r} (cluster {self.twin.name} has {names[0]}..{names[-1]})")
        indexes = [g.index for g in self.twin.nodes[node].gpus]
        if gpus is None:
            return indexes
        missing = [g for g in gpus if g not in indexes]
        if missing:
            raise NotFound(f"no GPU {missing[0]} on {node} (it has GPUs 0..{len(indexes) - 1})")
        return list(gpus)

    async def gpu_metrics(
        self, node: str, gpus: Sequence[int] | None, fields: Sequence[str], window_s: float, step_s: float
    ) -> list[MetricSeries]:
        indexes = self._node_gpus(node, gpus)
        unknown = [f for f in fields if f not in SAMPLED]
        if unknown:
            raise BackendError(
                f"the fleet twin does not sample {', '.join(unknown)}; it samples {', '.join(SAMPLED)} "
                "(a Prometheus scraping its exporter has every field)"
            )
        self.sample()
        since = self.twin.now() - timedelta(seconds=window_s)
        window = [s for s in self._snapshots if s.time >= since]
        stride = max(1, math.ceil(len(window) / MAX_POINTS), round(step_s / self.sample_every_s))
        # Keep the newest snapshot whatever the stride: "last" must be the current value.
        picked = window[::-1][::stride][::-1]
        width = len(SAMPLED)
        out = []
        for gpu in indexes:
            base = self._slots[(node, gpu)] * width
            for name in fields:
                column = _COLUMN[name]
                samples = [
                    Sample(time=s.time, value=v)
                    for s in picked
                    if not math.isnan(v := s.values[base + column])
                ]
                values = [s.value for s in samples]
                out.append(
                    MetricSeries(
                        node=node,
                        gpu=gpu,
                        field=name,
                        unit=DCGM_FIELDS[name],
                        samples=samples,
                        last=values[-1] if values else None,
                        min=min(values) if values else None,
                        max=max(values) if values else None,
                    )
                )
        return out

    async def xid_history(self, node: str | None, gpu: int | None, window_s: float) -> list[XidOccurrence]:
        if node is not None:
            self._node_gpus(node, [gpu] if gpu is not None else None)
        since = self.twin.now() - timedelta(seconds=window_s)
        found = []
        for occurrence in reversed(self._xids):
            if occurrence.time < since:
                break
            if node is not None and occurrence.node != node:
                continue
            if gpu is not None and occurrence.gpu != gpu:
                continue
            found.append(occurrence)
        return found

    async def ecc_counters(self, node: str, gpu: int | None) -> list[EccCounters]:
        out = []
        for index in self._node_gpus(node, [gpu] if gpu is not None else None):
            c = self._counters(node, index)
            out.append(
                judge_ecc(
                    node,
                    index,
                    sbe_volatile=c.sbe_volatile,
                    dbe_volatile=c.dbe_volatile,
                    sbe_aggregate=c.sbe_aggregate,
                    dbe_aggregate=c.dbe_aggregate,
                    retired_sbe=c.retired_sbe,
                    retired_dbe=c.retired_dbe,
                    retired_pending=c.retired_pending,
                    remapped_rows_correctable=c.remap_correctable,
                    remapped_rows_uncorrectable=c.remap_uncorrectable,
                    row_remap_pending=bool(c.remap_pending),
                    row_remap_failure=bool(c.remap_failure),
                )
            )
        return out

    async def gpu_faults(self, window_s: float) -> list[GpuFaults]:
        faults: dict[tuple[str, int], GpuFaults] = {}
        for occurrence in await self.xid_history(None, None, window_s):
            if occurrence.gpu is None:
                continue
            entry = faults.setdefault(
                (occurrence.node, occurrence.gpu), GpuFaults(node=occurrence.node, gpu=occurrence.gpu)
            )
            entry.xids += 1
            code = str(occurrence.xid)
            entry.by_code[code] = entry.by_code.get(code, 0) + 1
        # Volatile ECC counters count since the last reset, which is as close to "the window" as
        # the twin's present-only counters come.
        for (node, gpu), c in self.twin.telemetry.gpus.items():
            if c.dbe_volatile or c.sbe_volatile:
                entry = faults.setdefault((node, gpu), GpuFaults(node=node, gpu=gpu))
                entry.dbe, entry.sbe = c.dbe_volatile, c.sbe_volatile
        return list(faults.values())

    async def step_count(self, job: str, window_s: float) -> StepCount | None:
        self.sample()
        since = self.twin.now() - timedelta(seconds=window_s)
        window = [s for s in self._snapshots if s.time >= since and job in s.steps]
        if len(window) < 2:
            return None
        first, last = window[0], window[-1]
        # A restart rewinds the step counter; count only forward progress.
        steps = sum(max(0, b.steps[job] - a.steps[job]) for a, b in itertools.pairwise(window))
        return StepCount(samples=len(window), steps=steps, seconds=(last.time - first.time).total_seconds())

    async def promql(
        self, query: str, *, at: datetime | None, start: datetime | None, end: datetime | None, step_s: float
    ) -> PromqlResult:
        raise BackendError(
            "PromQL needs a Prometheus: the fleet twin serves dcgm-exporter metrics for one to scrape "
            "(AIOPS_PROMETHEUS_URL); gpu_metrics, xid_history and ecc_status work on the twin itself"
        )
