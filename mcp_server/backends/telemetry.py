"""The telemetry protocol: where the telemetry tools read DCGM metrics and Xid history.

Separate from ``ClusterBackend`` because in a real deployment they are two systems: the cluster is
Kubernetes, the metrics live in a Prometheus that scrapes dcgm-exporter. The fleet twin serves
both roles for itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from mcp_server.backends.base import BackendError
from mcp_server.metrics import (
    EccCounters,
    GpuFaults,
    MetricSeries,
    PromqlResult,
    StepCount,
    XidOccurrence,
)

# Bounds on what a caller can ask a telemetry source for, so one tool call cannot scan a year of a
# 100k-GPU fleet.
MAX_WINDOW_S = 7 * 24 * 3600
MAX_POINTS = 500
MAX_PROMQL_SERIES = 200


class TelemetrySource(Protocol):
    @property
    def kind(self) -> str: ...

    async def gpu_metrics(
        self, node: str, gpus: Sequence[int] | None, fields: Sequence[str], window_s: float, step_s: float
    ) -> list[MetricSeries]:
        """Series of ``fields`` for the GPUs of ``node`` (all when ``gpus`` is None) over the last
        ``window_s`` seconds at about ``step_s`` resolution."""
        ...

    async def xid_history(self, node: str | None, gpu: int | None, window_s: float) -> list[XidOccurrence]:
        """Every Xid seen in the window (on ``node``/``gpu`` when given), newest first."""
        ...

    async def ecc_counters(self, node: str, gpu: int | None) -> list[EccCounters]:
        """The current ECC, retired-page and row-remap counters of the node's GPUs."""
        ...

    async def gpu_faults(self, window_s: float) -> list[GpuFaults]:
        """GPUs that showed any Xid or ECC error in the window (for top_offenders)."""
        ...

    async def step_count(self, job: str, window_s: float) -> StepCount | None:
        """Steps ``job`` made over the window, or None when the source does not see training steps."""
        ...

    async def promql(
        self, query: str, *, at: datetime | None, start: datetime | None, end: datetime | None, step_s: float
    ) -> PromqlResult:
        """Evaluate a read-only PromQL query (instant at ``at``, or a range ``start``..``end``)."""
        ...


class NoTelemetry:
    """A server with no telemetry configured: every telemetry tool says how to get one."""

    HOW = (
        "no telemetry source is configured: set AIOPS_PROMETHEUS_URL to a Prometheus that scrapes "
        "dcgm-exporter (or run against the fleet twin)"
    )

    @property
    def kind(self) -> str:
        return "none"

    async def gpu_metrics(
        self, node: str, gpus: Sequence[int] | None, fields: Sequence[str], window_s: float, step_s: float
    ) -> list[MetricSeries]:
        raise BackendError(self.HOW)

    async def xid_history(self, node: str | None, gpu: int | None, window_s: float) -> list[XidOccurrence]:
        raise BackendError(self.HOW)

    async def ecc_counters(self, node: str, gpu: int | None) -> list[EccCounters]:
        raise BackendError(self.HOW)

    async def gpu_faults(self, window_s: float) -> list[GpuFaults]:
        raise BackendError(self.HOW)

    async def step_count(self, job: str, window_s: float) -> StepCount | None:
        return None

    async def promql(
        self, query: str, *, at: datetime | None, start: datetime | None, end: datetime | None, step_s: float
    ) -> PromqlResult:
        raise BackendError(self.HOW)
