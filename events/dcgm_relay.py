"""The wire of a node agent's DCGM relay (``aiops node --dcgm-exporter``), for fleets without Prometheus.

The agent scrapes its node's dcgm-exporter and publishes, on ``gpu.dcgm.<cluster>.<node>`` (stream
``GPU_DCGM``, the last few reports per node), one ``DcgmReport``: per GPU, the DCGM fields the
detector reads, under their DCGM names (the exporter's own vocabulary, not the detector's). The node
is the agent's node name — the one its kernel lines carry — not the exporter's ``Hostname`` label.
A report whose subject does not name its own cluster and node is refused, like one that does not
validate: the consumer dead-letters both (``events/detectors/relay.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from events import subjects
from events.detectors.dcgm import FIELDS, LAST_XID, METRIC_NAMES, XID_COUNT, GpuReading
from events.detectors.exposition import Sample
from events.kmsg_parser import normalise_pci_bus_id

MAX_GPUS = 256
"""More GPUs than any node has: a report beyond it is not a node's."""


class RelayedGpu(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gpu: int = Field(ge=0)
    uuid: str | None = None
    pci_bus_id: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    """DCGM metric name -> value (the detector's fields and the last Xid)."""
    xid_counts: dict[int, int] = Field(default_factory=dict)
    """Xid -> the exporter's windowed count (``DCGM_EXP_XID_ERRORS_COUNT``)."""


class DcgmReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cluster: str = Field(min_length=1)
    node: str = Field(min_length=1)
    time: AwareDatetime
    exporter: str = ""
    """The URL the agent scraped."""
    gpus: list[RelayedGpu] = Field(default_factory=list, max_length=MAX_GPUS)

    def changed_from(self, other: DcgmReport | None) -> bool:
        """Whether the GPUs' fields differ from ``other``'s (the time and exporter do not count)."""
        return other is None or self.gpus != other.gpus


def report_from_samples(
    cluster: str, node: str, samples: Iterable[Sample], *, exporter: str, time: datetime
) -> DcgmReport:
    """One scrape of a node's exporter as a report (samples without a GPU index are left out)."""
    gpus: dict[int, RelayedGpu] = {}
    for s in samples:
        if s.name not in METRIC_NAMES:
            continue
        try:
            index = int(s.labels.get("gpu", ""))
        except ValueError:
            continue
        gpu = gpus.get(index)
        if gpu is None:
            gpu = gpus[index] = RelayedGpu(
                gpu=index, uuid=s.labels.get("UUID"), pci_bus_id=s.labels.get("pci_bus_id")
            )
        if s.name == XID_COUNT:
            try:
                gpu.xid_counts[int(s.labels.get("xid", ""))] = int(s.value)
            except ValueError:
                continue
        else:
            gpu.metrics[s.name] = s.value
    return DcgmReport(
        cluster=cluster, node=node, time=time, exporter=exporter, gpus=[gpus[i] for i in sorted(gpus)]
    )


def encode_report(report: DcgmReport) -> bytes:
    return report.model_dump_json(exclude_defaults=False).encode()


def decode_report(subject: str, data: bytes) -> DcgmReport:
    """The report of a message; ``ValueError`` (a pydantic ``ValidationError`` among them) when it is
    not one, or not the one its subject names."""
    report = DcgmReport.model_validate_json(data)
    if subjects.dcgm(report.cluster, report.node) != subject:
        raise ValueError(
            f"a report of {report.cluster}/{report.node} on {subject}: the subject names another node"
        )
    return report


def readings(report: DcgmReport) -> list[GpuReading]:
    """The report per GPU, as the DCGM detector compares them."""
    out = []
    for gpu in report.gpus:
        out.append(
            GpuReading(
                report.node,
                gpu.gpu,
                normalise_pci_bus_id(gpu.pci_bus_id) if gpu.pci_bus_id else None,
                gpu.uuid,
                {FIELDS[name]: value for name, value in gpu.metrics.items() if name in FIELDS},
                dict(gpu.xid_counts),
                gpu.metrics.get(LAST_XID),
            )
        )
    return out
