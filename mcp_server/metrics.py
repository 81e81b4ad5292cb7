"""What the telemetry tools return: DCGM series, Xid occurrences, ECC counters, fleet health.

Every telemetry source (the fleet twin's own counters, a Prometheus scraping dcgm-exporter) answers
in these shapes. Field names are dcgm-exporter's metric names where one exists, so a person can
paste them into PromQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from contracts.tools import JobState
from events import dcgm_fields

# The DCGM fields the telemetry tools know, by dcgm-exporter metric name, with their unit.
DcgmField = dcgm_fields.DcgmFieldName
DCGM_FIELDS: dict[str, str] = dcgm_fields.UNITS
DEFAULT_FIELDS = (
    dcgm_fields.GPU_TEMP,
    dcgm_fields.POWER_USAGE,
    dcgm_fields.CLOCKS_EVENT_REASONS,
    dcgm_fields.ECC_DBE_VOL,
)
# DCGM's own limits (DcgmGPUHardwareLimits.h): 15 retired pages is a soft warning, 63 a bad GPU;
# 512 uncorrectable remapped rows is a bad GPU; a row-remap failure means replace.
RETIRED_PAGES_WARN = 15
RETIRED_PAGES_BAD = 63
REMAPPED_ROWS_BAD = 512

Verdict = Literal["ok", "watch", "reset_needed", "replace"]


class Sample(BaseModel):
    time: datetime
    value: float


class MetricSeries(BaseModel):
    """One DCGM field of one GPU over the window, oldest sample first."""

    node: str
    gpu: int
    field: str = Field(description="dcgm-exporter metric name")
    unit: str
    samples: list[Sample]
    last: float | None = Field(description="the newest value; null when the window holds none")
    min: float | None = None
    max: float | None = None


class GpuMetrics(BaseModel):
    node: str
    window_s: float
    source: str = Field(description="where the samples come from: 'twin' or 'prometheus'")
    series: list[MetricSeries]
    note: str | None = Field(default=None, description="a limit of the source the reader should know")


class XidOccurrence(BaseModel):
    time: datetime
    node: str
    gpu: int | None = Field(description="GPU index, when the PCI bus id maps to one")
    xid: int
    mnemonic: str = ""
    message: str = ""


class XidHistory(BaseModel):
    window_s: float
    source: str
    occurrences: list[XidOccurrence] = Field(description="newest first, capped at `limit`")
    total: int = Field(description="occurrences in the window before the cap")
    by_code: dict[str, int] = Field(description="count per Xid code over the whole window")


class EccCounters(BaseModel):
    """One GPU's memory health from DCGM's ECC, page-retirement and row-remap counters."""

    node: str
    gpu: int
    sbe_volatile: int
    dbe_volatile: int
    sbe_aggregate: int
    dbe_aggregate: int
    retired_sbe: int
    retired_dbe: int
    retired_pending: int
    remapped_rows_correctable: int
    remapped_rows_uncorrectable: int
    row_remap_pending: bool
    row_remap_failure: bool
    verdict: Verdict = Field(
        description="ok; watch (corrected errors or retired pages past DCGM's soft limit); "
        "reset_needed (a double-bit error or a pending remap a GPU reset applies); "
        "replace (a remap failure or DCGM's hard limits)"
    )
    reasons: list[str] = Field(default_factory=list)


class EccStatus(BaseModel):
    node: str
    source: str
    gpus: list[EccCounters]


class GpuFaults(BaseModel):
    """Faults one GPU showed in a window (the input of top_offenders)."""

    node: str
    gpu: int
    xids: int = 0
    by_code: dict[str, int] = Field(default_factory=dict)
    dbe: int = Field(default=0, description="double-bit ECC errors (volatile counter)")
    sbe: int = Field(default=0, description="single-bit ECC errors (volatile counter)")


class StepCount(BaseModel):
    """Steps a job made in a window, from the samples a telemetry source keeps."""

    samples: int
    steps: int
    seconds: float


class JobThroughput(BaseModel):
    job: str
    state: JobState
    step: int
    step_time_s: float = Field(description="current seconds per step")
    baseline_step_s: float | None = Field(description="the job's healthy step time, when known")
    slowdown: float | None = Field(description="step_time_s / baseline_step_s; 1.0 = healthy")
    steps_in_window: int | None = None
    steps_per_s: float | None = Field(default=None, description="measured over the window")
    window_s: float
    gpus: int
    mean_gr_engine_active: float | None = Field(description="mean DCGM_FI_PROF_GR_ENGINE_ACTIVE of its GPUs")
    throttled_gpus: list[str] = Field(description="'<node>/<gpu>' with thermal or power clock events")
    hottest_gpu: str | None = None
    hottest_gpu_temp_c: float | None = None
    source: str


class PromqlSeries(BaseModel):
    labels: dict[str, str]
    samples: list[Sample]


class PromqlResult(BaseModel):
    query: str
    result_type: str = Field(description="vector, matrix, scalar or string")
    series: list[PromqlSeries]
    truncated: bool = Field(description="true when series or samples were cut to the limits")


def judge_ecc(
    node: str,
    gpu: int,
    *,
    sbe_volatile: int = 0,
    dbe_volatile: int = 0,
    sbe_aggregate: int = 0,
    dbe_aggregate: int = 0,
    retired_sbe: int = 0,
    retired_dbe: int = 0,
    retired_pending: int = 0,
    remapped_rows_correctable: int = 0,
    remapped_rows_uncorrectable: int = 0,
    row_remap_pending: bool = False,
    row_remap_failure: bool = False,
) -> EccCounters:
    """One GPU's counters with DCGM's verdict on them (every source judges the same way)."""
    reasons: list[str] = []
    verdict: Verdict = "ok"
    retired = retired_sbe + retired_dbe
    if row_remap_failure:
        reasons.append("row remap failed: the GPU cannot repair its memory (an RMA criterion)")
    if retired >= RETIRED_PAGES_BAD:
        reasons.append(f"{retired} retired pages: DCGM's limit for a bad GPU is {RETIRED_PAGES_BAD}")
    if remapped_rows_uncorrectable >= REMAPPED_ROWS_BAD:
        reasons.append(
            f"{remapped_rows_uncorrectable} uncorrectable remapped rows: DCGM's limit is {REMAPPED_ROWS_BAD}"
        )
    if reasons:
        verdict = "replace"
    else:
        if dbe_volatile:
            reasons.append(f"{dbe_volatile} double-bit errors since the last reset: reset before reuse")
        if row_remap_pending or retired_pending:
            reasons.append("a row remap or page retirement is pending: a GPU reset applies it")
        if reasons:
            verdict = "reset_needed"
        else:
            if retired >= RETIRED_PAGES_WARN:
                reasons.append(f"{retired} retired pages: past DCGM's soft limit of {RETIRED_PAGES_WARN}")
            if sbe_volatile:
                reasons.append(f"{sbe_volatile} corrected single-bit errors since the last reset: trend it")
            if reasons:
                verdict = "watch"
    return EccCounters(
        node=node,
        gpu=gpu,
        sbe_volatile=sbe_volatile,
        dbe_volatile=dbe_volatile,
        sbe_aggregate=sbe_aggregate,
        dbe_aggregate=dbe_aggregate,
        retired_sbe=retired_sbe,
        retired_dbe=retired_dbe,
        retired_pending=retired_pending,
        remapped_rows_correctable=remapped_rows_correctable,
        remapped_rows_uncorrectable=remapped_rows_uncorrectable,
        row_remap_pending=row_remap_pending,
        row_remap_failure=row_remap_failure,
        verdict=verdict,
        reasons=reasons,
    )
