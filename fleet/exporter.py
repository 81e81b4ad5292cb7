"""The twin's DCGM metrics in dcgm-exporter's text format, servable at ``/metrics`` over HTTP.

Metric names, types and labels follow dcgm-exporter (``gpu``, ``UUID``, ``pci_bus_id`` in its
8-digit-domain upper-case form, ``device``, ``modelName``, ``Hostname``, ``DCGM_FI_DRIVER_VERSION``),
so a Prometheus that scrapes it, and the DCGM detector that reads it, cannot tell it from the real
exporter. Like the real exporter, a GPU that fell off the bus disappears from the output.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from events import dcgm_fields
from fleet.topology import Gpu, Node

if TYPE_CHECKING:
    from fleet.twin import FleetTwin

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_SM_CLOCK_MHZ = 1980

# (name, type, help, value of a GPU): the DCGM vocabulary, in dcgm-exporter's order.
_METRICS: list[tuple[str, str, str, str]] = [(f.name, f.kind, f.help, f.sample) for f in dcgm_fields.FIELDS]
XID_COUNT = dcgm_fields.XID_COUNT


def exporter_pci_bus_id(pci_bus_id: str) -> str:
    """``0000:18:00.0`` -> ``00000000:18:00.0``, the form DCGM puts in its labels."""
    domain, rest = pci_bus_id.split(":", 1)
    return f"{int(domain, 16):08X}:{rest.upper()}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


METRIC_FIELDS = {name: field for name, _, _, field in _METRICS}
"""dcgm-exporter metric name -> the value of a GPU it exports (see ``GpuSeries``)."""
_FIELDS = list(METRIC_FIELDS.values())
RAW_FIELDS = ("throttle", *(f for f in _FIELDS if f not in ("sm_clock", "gr_active")))
_read_raw = attrgetter(*RAW_FIELDS)


@dataclass(frozen=True, slots=True)
class GpuSeries:
    """One GPU's exported values at one instant: a copy, safe to read from another thread."""

    labels: dict[str, str]
    label_text: str
    busy: bool
    raw: tuple[float, ...]
    """The counters named in ``RAW_FIELDS``, in that order."""
    xid_counts: tuple[tuple[int, int], ...]

    def value(self, field: str) -> float:
        throttle = self.raw[0]
        if field == "sm_clock":
            return round(MAX_SM_CLOCK_MHZ / throttle) if self.busy else 345
        if field == "gr_active":
            return 0.93 / throttle if self.busy else 0.0
        return float(self.raw[RAW_FIELDS.index(field)])


# Labels never change for a GPU: built once per twin.
_LABELS: weakref.WeakKeyDictionary[FleetTwin, dict[tuple[str, int], tuple[dict[str, str], str]]] = (
    weakref.WeakKeyDictionary()
)


def _labels(twin: FleetTwin, node: Node, gpu: Gpu) -> tuple[dict[str, str], str]:
    cache = _LABELS.setdefault(twin, {})
    key = (node.name, gpu.index)
    if key not in cache:
        pairs = {
            "gpu": str(gpu.index),
            "UUID": gpu.uuid,
            "pci_bus_id": exporter_pci_bus_id(gpu.pci_bus_id),
            "device": f"nvidia{gpu.index}",
            "modelName": twin.cluster.gpu_model,
            "Hostname": node.name,
            "DCGM_FI_DRIVER_VERSION": twin.cluster.driver_version,
        }
        cache[key] = (pairs, ",".join(f'{k}="{_escape(v)}"' for k, v in pairs.items()))
    return cache[key]


def snapshot(twin: FleetTwin, node: str | None = None) -> list[GpuSeries]:
    """What a scrape of the fleet (or one node) would export now. Cheap; call it where the twin
    lives (its event loop), then render or read it anywhere."""
    now = twin.now()
    out: list[GpuSeries] = []
    for n in twin.nodes.values():
        if (node and n.name != node) or n.state != "ready":
            continue
        running = [job for job in twin.jobs_on_node(n.name) if job.state == "running"]
        for gpu in n.gpus:
            busy = any(job.uses(n.name, gpu.index) for job in running)
            if gpu.health == "fallen_off_bus":
                continue  # the driver lost it; dcgm-exporter stops reporting it
            counters = twin.telemetry.counters(n.name, gpu.index)
            labels, text = _labels(twin, n, gpu)
            out.append(
                GpuSeries(
                    labels, text, busy, _read_raw(counters), tuple(sorted(counters.xid_counts(now).items()))
                )
            )
    return out


def render_snapshot(snap: list[GpuSeries]) -> str:
    """A snapshot as one dcgm-exporter scrape in the Prometheus text format."""
    last_xid = RAW_FIELDS.index("last_xid")
    out: list[str] = []
    for name, kind, help_text, field in _METRICS:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        for s in snap:
            labels = s.label_text
            if name == dcgm_fields.XID_ERRORS:
                labels += f',err_code="{int(s.raw[last_xid])}"'
            out.append(f"{name}{{{labels}}} {s.value(field):g}")
    out.append(f"# HELP {XID_COUNT} {dcgm_fields.XID_COUNT_HELP}")
    out.append(f"# TYPE {XID_COUNT} gauge")
    for s in snap:
        for code, count in s.xid_counts:
            out.append(f'{XID_COUNT}{{{s.label_text},xid="{code}"}} {count}')
    return "\n".join(out) + "\n"


def render_metrics(twin: FleetTwin, node: str | None = None) -> str:
    """The whole fleet's (or one node's) metrics as one dcgm-exporter scrape."""
    return render_snapshot(snapshot(twin, node))


def exporter_app(twin: FleetTwin) -> Starlette:
    """An ASGI app serving ``GET /metrics`` (optionally ``?node=<name>``, one node's exporter)."""

    async def metrics(request: Request) -> Response:
        node = request.query_params.get("node")
        if node and node not in twin.nodes:
            return PlainTextResponse(f"no node named {node!r}\n", status_code=404)
        # The state is read here, on the loop that owns the twin; the text is made in a thread.
        text = await asyncio.to_thread(render_snapshot, snapshot(twin, node))
        return Response(text, media_type=CONTENT_TYPE)

    return Starlette(routes=[Route("/metrics", metrics)])
