"""Telemetry tools: DCGM metrics over a window, Xid history, ECC health, job throughput, the fleet
at a glance, the worst offenders, and bounded read-only PromQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from events import dcgm_fields
from events.models import utcnow
from mcp_server.backends.base import BackendError
from mcp_server.backends.telemetry import MAX_POINTS, MAX_WINDOW_S
from mcp_server.metrics import (
    DEFAULT_FIELDS,
    DcgmField,
    EccStatus,
    GpuFaults,
    GpuMetrics,
    JobThroughput,
    PromqlResult,
    XidHistory,
)
from mcp_server.tools._common import READ_ONLY, deps_of, readable
from mcp_server.tools.fleet_health import FleetHealth, fleet_health_of

MAX_PROMQL_CHARS = 2000
THROTTLE_BITS = 0x8 | 0x20 | 0x40 | 0x80  # HW slowdown, SW thermal, HW thermal, power brake

DEFAULT_POINTS = 12


class Offender(BaseModel):
    target: str = Field(description="'<node>/<gpu>' or '<node>'")
    node: str
    gpu: int | None = None
    xids: int
    by_code: dict[str, int]
    dbe: int
    sbe: int
    score: float = Field(description="xids + 10 x double-bit errors + single-bit errors / 100")


class Offenders(BaseModel):
    window_s: float
    by: Literal["gpu", "node"]
    offenders: list[Offender]
    source: str


def _score(xids: int, dbe: int, sbe: int) -> float:
    # A double-bit error is worth ten Xids: each one is a reset and a possible RMA.
    return round(xids + 10 * dbe + sbe / 100, 2)


def _offenders(faults: list[GpuFaults], by: Literal["gpu", "node"]) -> list[Offender]:
    if by == "gpu":
        return [
            Offender(
                target=f"{f.node}/{f.gpu}",
                node=f.node,
                gpu=f.gpu,
                xids=f.xids,
                by_code=f.by_code,
                dbe=f.dbe,
                sbe=f.sbe,
                score=_score(f.xids, f.dbe, f.sbe),
            )
            for f in faults
        ]
    nodes: dict[str, Offender] = {}
    for f in faults:
        entry = nodes.setdefault(
            f.node, Offender(target=f.node, node=f.node, xids=0, by_code={}, dbe=0, sbe=0, score=0)
        )
        entry.xids += f.xids
        entry.dbe += f.dbe
        entry.sbe += f.sbe
        for code, count in f.by_code.items():
            entry.by_code[code] = entry.by_code.get(code, 0) + count
    for entry in nodes.values():
        entry.score = _score(entry.xids, entry.dbe, entry.sbe)
    return list(nodes.values())


async def fleet_health(ctx: Context) -> FleetHealth:
    """The whole fleet at a glance: one headline and status (healthy, degraded, critical),
    nodes and GPUs by condition, jobs by state, spares left, the blast-radius budget, open
    incidents, GPU-hours lost, and the few things that need attention first."""
    deps = deps_of(ctx)
    return await fleet_health_of(deps)


async def top_offenders(
    ctx: Context,
    window_hours: Annotated[
        float, Field(gt=0, le=MAX_WINDOW_S / 3600, description="look back this far")
    ] = 24,
    by: Annotated[Literal["gpu", "node"], Field(description="rank GPUs or whole nodes")] = "gpu",
    limit: Annotated[int, Field(ge=1, le=100)] = 10,
) -> Offenders:
    """The GPUs (or nodes) with the most faults in the window: Xids by code and ECC errors,
    worst first. Repeat offenders are candidates for diagnostics or replacement (a few
    "lemon" GPUs cause most failures in large fleets)."""
    deps = deps_of(ctx)
    telemetry = deps.telemetry
    faults = await readable(telemetry.gpu_faults(window_hours * 3600))
    ranked = sorted(_offenders(faults, by), key=lambda o: (-o.score, o.target))
    return Offenders(window_s=window_hours * 3600, by=by, offenders=ranked[:limit], source=telemetry.kind)


async def gpu_metrics(
    ctx: Context,
    node: Annotated[str, Field(description="node name")],
    gpus: Annotated[
        list[int] | None, Field(description="GPU indexes; default: every GPU of the node")
    ] = None,
    fields: Annotated[
        list[DcgmField] | None,
        Field(description="dcgm-exporter metric names; default: temperature, power, clock events, DBE"),
    ] = None,
    window_minutes: Annotated[
        float, Field(gt=0, le=MAX_WINDOW_S / 60, description="look back this far")
    ] = 60,
    step_s: Annotated[
        float | None,
        Field(ge=1, le=3600, description=f"resolution; default: the window in {DEFAULT_POINTS} steps"),
    ] = None,
) -> GpuMetrics:
    """DCGM fields of a node's GPUs over a time window (series with min, max and last), e.g.
    GPU temperature, power, clock-throttle reasons, ECC counters. By default each series has
    about 12 points over the window (pass step_s for more); at most 500 (the step grows to fit)."""
    deps = deps_of(ctx)
    backend, telemetry = deps.backend, deps.telemetry
    await readable(backend.get_node(node))
    window_s = window_minutes * 60
    # A bounded default answer (8 GPUs x 4 fields x 12 points); ask for a finer step when needed.
    step = max(step_s or window_s / DEFAULT_POINTS, window_s / MAX_POINTS)
    series = await readable(telemetry.gpu_metrics(node, gpus, list(fields or DEFAULT_FIELDS), window_s, step))
    note = None
    if telemetry.kind == "twin" and window_s > 0:
        note = "the fleet twin samples its counters about once a simulated minute while it runs"
    return GpuMetrics(node=node, window_s=window_s, source=telemetry.kind, series=series, note=note)


async def xid_history(
    ctx: Context,
    node: Annotated[str | None, Field(description="only this node; default: the whole fleet")] = None,
    gpu: Annotated[int | None, Field(ge=0, le=15, description="only this GPU of the node")] = None,
    window_hours: Annotated[float, Field(gt=0, le=MAX_WINDOW_S / 3600)] = 24,
    limit: Annotated[int, Field(ge=1, le=500)] = 50,
) -> XidHistory:
    """Xid errors the driver reported in the window, newest first, with their catalog mnemonic
    and a count per code. Repeats of one code on one GPU point at the hardware; the same
    application Xid (13, 31, 43) spread over many GPUs points at the workload."""
    deps = deps_of(ctx)
    backend, telemetry = deps.backend, deps.telemetry
    if gpu is not None and node is None:
        raise ToolError("gpu needs node: a GPU index means nothing without its node")
    if node is not None:
        await readable(backend.get_node(node))
    found = await readable(telemetry.xid_history(node, gpu, window_hours * 3600))
    by_code: dict[str, int] = {}
    for occurrence in found:
        by_code[str(occurrence.xid)] = by_code.get(str(occurrence.xid), 0) + 1
    return XidHistory(
        window_s=window_hours * 3600,
        source=telemetry.kind,
        occurrences=found[:limit],
        total=len(found),
        by_code=by_code,
    )


async def ecc_status(
    ctx: Context,
    node: Annotated[str, Field(description="node name")],
    gpu: Annotated[int | None, Field(ge=0, le=15, description="one GPU; default: all of the node")] = None,
) -> EccStatus:
    """GPU memory health of a node: volatile and aggregate single/double-bit ECC counts,
    retired pages, row remaps (pending, failed), and DCGM's verdict per GPU: ok, watch,
    reset_needed (a reset applies a pending remap / clears a DBE), or replace."""
    deps = deps_of(ctx)
    backend, telemetry = deps.backend, deps.telemetry
    await readable(backend.get_node(node))
    gpus = await readable(telemetry.ecc_counters(node, gpu))
    return EccStatus(node=node, source=telemetry.kind, gpus=gpus)


async def job_throughput(
    ctx: Context,
    job: Annotated[str, Field(description="job name")],
    window_minutes: Annotated[float, Field(gt=0, le=MAX_WINDOW_S / 60)] = 30,
) -> JobThroughput:
    """Is a training job as fast as it should be? Current step time against its healthy
    baseline (slowdown), steps made in the window, and the GPUs of its gang that throttle
    (clock events) or run hottest. A slowdown with one throttled GPU points at that GPU; a
    slowdown shared by jobs under one leaf switch points at the fabric."""
    deps = deps_of(ctx)
    backend, telemetry = deps.backend, deps.telemetry
    view = await readable(backend.get_job(job))
    window_s = window_minutes * 60
    baseline = view.baseline_step_s
    try:
        progress = await backend.job_progress(job)
        baseline = progress.baseline_step_s
    except BackendError:
        pass  # no baseline from the scheduler: use what the job view knows
    counted = await readable(telemetry.step_count(job, window_s)) if view.state != "pending" else None
    throttled: list[str] = []
    hottest: tuple[float, str] | None = None
    fields = [dcgm_fields.GPU_TEMP, dcgm_fields.CLOCKS_EVENT_REASONS]
    activity: list[float] = []
    for node in view.nodes:
        try:
            series = await telemetry.gpu_metrics(node, None, fields, 300, 60)
        except BackendError:
            break  # no telemetry: the scheduler's numbers stand alone
        for s in series:
            if s.last is None:
                continue
            where = f"{s.node}/{s.gpu}"
            if s.field == dcgm_fields.CLOCKS_EVENT_REASONS and int(s.last) & THROTTLE_BITS:
                throttled.append(where)
            if s.field == dcgm_fields.GPU_TEMP and (hottest is None or s.last > hottest[0]):
                hottest = (s.last, where)
        try:
            active = await telemetry.gpu_metrics(node, None, [dcgm_fields.GR_ENGINE_ACTIVE], 300, 60)
            activity += [s.last for s in active if s.last is not None]
        except BackendError:
            pass  # the source does not carry engine activity (the twin samples counters only)
    slowdown = round(view.step_time_s / baseline, 3) if baseline else None
    return JobThroughput(
        job=job,
        state=view.state,
        step=view.step,
        step_time_s=view.step_time_s,
        baseline_step_s=baseline,
        slowdown=slowdown,
        steps_in_window=counted.steps if counted else None,
        steps_per_s=round(counted.steps / counted.seconds, 4) if counted and counted.seconds else None,
        window_s=window_s,
        gpus=view.gpus,
        mean_gr_engine_active=round(sum(activity) / len(activity), 3) if activity else None,
        throttled_gpus=throttled,
        hottest_gpu=hottest[1] if hottest else None,
        hottest_gpu_temp_c=hottest[0] if hottest else None,
        source=telemetry.kind,
    )


async def promql(
    ctx: Context,
    query: Annotated[
        str, Field(min_length=1, max_length=MAX_PROMQL_CHARS, description="a PromQL expression")
    ],
    range_minutes: Annotated[
        float | None,
        Field(gt=0, le=MAX_WINDOW_S / 60, description="a range query over the last N minutes"),
    ] = None,
    step_s: Annotated[float, Field(ge=1, le=3600, description="range resolution")] = 60,
) -> PromqlResult:
    """Run a read-only PromQL query against the metrics Prometheus (dcgm-exporter series such as
    DCGM_FI_DEV_GPU_TEMP{Hostname="node-003"}). Instant by default; with `range_minutes` a
    range query. Bounded: at most 7 days, 500 points per series, 200 series. Only the query
    API is used; nothing can be written or deleted."""
    deps = deps_of(ctx)
    telemetry = deps.telemetry
    now = utcnow()
    if range_minutes is None:
        return await readable(telemetry.promql(query, at=now, start=None, end=None, step_s=step_s))
    window_s = range_minutes * 60
    step = max(step_s, window_s / MAX_POINTS)
    return await readable(
        telemetry.promql(query, at=None, start=now - timedelta(seconds=window_s), end=now, step_s=step)
    )


def register(server: MCPServer) -> None:
    server.add_tool(fleet_health, annotations=READ_ONLY)
    server.add_tool(top_offenders, annotations=READ_ONLY)
    server.add_tool(gpu_metrics, annotations=READ_ONLY)
    server.add_tool(xid_history, annotations=READ_ONLY)
    server.add_tool(ecc_status, annotations=READ_ONLY)
    server.add_tool(job_throughput, annotations=READ_ONLY)
    server.add_tool(promql, annotations=READ_ONLY)
