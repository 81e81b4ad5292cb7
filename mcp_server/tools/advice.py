"""Goodput advice tools: how many warm spares to keep (``spare_advice``, resource
``advice://spares``) and how often a job should checkpoint (``checkpoint_advice``, also in
``describe_job``), from the platform's own incident history and the fleet's size.

The math is ``skills.goodput_math`` (the fleet goodput study uses the same functions):

- the failure rate is the incidents of the last ``window_days`` (not folded into another, not
  suppressed) over the fleet's node-days: every such incident for a job's failure rate, those
  rooted in a GPU or node for node removals;
- the repair time is how long resolved hardware incidents stayed between ``mitigated`` (the node
  taken out) and ``resolved``;
- the checkpoint write time is the median of the job's last checkpoint writes, as its heartbeats
  reported them (``checkpoint_times`` KV bucket, written by the detectors);
- a caller may give either figure instead, and must when the history has none: nothing is guessed.
"""

from __future__ import annotations

import statistics
from typing import Annotated, Literal

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from pydantic import BaseModel, Field

from contracts.tools import JobView
from events.checkpoint_times import key_of, latest_write_s
from mcp_server import incident_history
from mcp_server.deps import ServerDeps
from mcp_server.incident_history import History
from mcp_server.spare_reserve import NoHistory, advise_spares, rate_of, reserve
from mcp_server.tools._common import READ_ONLY, deps_of, readable
from skills import goodput_math

GPUS_PER_NODE = 8
# Used only when the caller gives no write time and the job's heartbeats reported no checkpoint
# write yet (events/checkpoint_times.py). The answer names it as its basis.
ASSUMED_WRITE_S = 10.0  # the published target at 10k+ GPUs
ASSUMED_RESTART_S = 600.0  # published restart overhead 5-15 min


async def history(deps: ServerDeps, window_days: float) -> History:
    try:
        return await readable(incident_history.history(deps, window_days))
    except incident_history.HistoryTooLong as exc:
        raise ToolError(str(exc)) from exc


class SpareAdviceView(BaseModel):
    """The warm-spare pool that keeps the chance a node failure finds none free under the target."""

    nodes: int = Field(description="nodes in the cluster")
    window_days: float
    node_removals_per_1000_node_days: float
    removals_basis: str = Field(description="where the failure rate comes from")
    mean_repair_h: float
    repair_basis: str = Field(description="where the repair time comes from")
    model: Literal["poisson", "binomial"]
    target_p_dry: float
    advised_spares: int = Field(description="the fewest warm spares with P(dry) under the target")
    p_dry: float = Field(description="P(a node failure finds no spare free) with the advised pool")
    current_spares: int = Field(description="warm spares in the pool now (fit to take a gang member)")
    p_dry_current: float
    policy_min_spares: int = Field(
        description="the policy's reserve now (min_spares; AIOPS_MIN_SPARES=auto follows this advice)"
    )
    policy_min_spares_basis: str = Field(default="", description="configured, or auto and what it follows")
    job: str | None = None
    ettr_with_advice: float | None = Field(
        default=None, description="the job's expected ETTR from node-removing failures, advised pool"
    )
    ettr_without_spares: float | None = None


class CheckpointAdviceView(BaseModel):
    """Daly's optimum checkpoint interval for a job, and what it gains over the current one."""

    job: str
    gpus: int
    failures_per_1000_node_days: float
    failure_basis: str
    job_mtbf_h: float
    checkpoint_write_s: float
    write_basis: str
    current_interval_s: float
    young_interval_s: float
    advised_interval_s: float = Field(description="Daly's higher-order optimum")
    downtime_per_failure_s: float
    downtime_basis: str
    ettr_current: float
    ettr_advised: float
    ettr_gain: float = Field(description="advised minus current (renewal model)")
    gpu_hours_per_day_gained: float


def _rate(given: float | None, count: int, hist: History, what: str, window_days: float) -> tuple[float, str]:
    try:
        return rate_of(given, count, hist, what)
    except NoHistory as exc:
        raise ToolError(str(exc)) from exc


async def spare_advice_of(
    deps: ServerDeps,
    *,
    target_p_dry: float = 0.01,
    window_days: float = 30.0,
    failures_per_1000_node_days: float | None = None,
    repair_hours: float | None = None,
    model: Literal["poisson", "binomial"] = "poisson",
    job: str | None = None,
) -> SpareAdviceView:
    hist = await history(deps, window_days)
    view = await readable(deps.backend.get_job(job)) if job is not None else None
    try:
        sized = advise_spares(
            hist,
            target_p_dry=target_p_dry,
            failures_per_1000_node_days=failures_per_1000_node_days,
            repair_hours=repair_hours,
            model=model,
            job_gpus=view.gpus if view else None,
            checkpoint_interval_s=view.checkpoint_interval_s if view else None,
            swap_downtime_s=ASSUMED_RESTART_S,
        )
    except ValueError as exc:  # NoHistory included: it names the figure to pass
        raise ToolError(str(exc)) from exc
    advice, rate, rate_basis = sized.advice, sized.rate_per_node_day, sized.rate_basis
    repair_s, repair_basis, removals_per_day = (
        sized.repair_s,
        sized.repair_basis,
        sized.rate_per_node_day * hist.nodes,
    )
    held = await reserve(deps)
    pool = await readable(deps.backend.spare_pool())
    args = {"nodes": hist.nodes, "node_failures_per_day": removals_per_day, "mean_repair_s": repair_s}
    return SpareAdviceView(
        nodes=hist.nodes,
        window_days=window_days,
        node_removals_per_1000_node_days=round(rate * 1000, 4),
        removals_basis=rate_basis,
        mean_repair_h=round(repair_s / 3600, 3),
        repair_basis=repair_basis,
        model=model,
        target_p_dry=target_p_dry,
        advised_spares=advice.spares,
        p_dry=advice.p_dry,
        current_spares=pool.fit,
        p_dry_current=goodput_math.p_dry(pool.fit, **args, model=model),  # type: ignore[arg-type]
        policy_min_spares=held.spares,
        policy_min_spares_basis=held.basis,
        job=job,
        ettr_with_advice=advice.ettr_with,
        ettr_without_spares=advice.ettr_without,
    )


async def checkpoint_advice_of(
    deps: ServerDeps,
    view: JobView,
    *,
    checkpoint_write_s: float | None = None,
    window_days: float = 30.0,
    failures_per_1000_node_days: float | None = None,
    restart_overhead_s: float | None = None,
) -> CheckpointAdviceView:
    hist = await history(deps, window_days)
    rate, rate_basis = _rate(failures_per_1000_node_days, hist.incidents, hist, "incidents", window_days)
    measured = latest_write_s(await deps.checkpoint_times.get(key_of(view.name)))
    if checkpoint_write_s is not None:
        write, write_basis = checkpoint_write_s, "given"
    elif measured is not None:
        write, write_basis = measured
    else:
        write = ASSUMED_WRITE_S
        write_basis = (
            f"ASSUMED {ASSUMED_WRITE_S:g} s: no checkpoint write reported in the job's heartbeats yet "
            "(TrainingHeartbeat.checkpointed); pass checkpoint_write_s"
        )
    restart = ASSUMED_RESTART_S if restart_overhead_s is None else restart_overhead_s
    mitigate = statistics.fmean(hist.mitigate_samples_s) if hist.mitigate_samples_s else 0.0
    downtime_basis = (
        f"mean time to mitigate {mitigate:.0f} s (incident history, {len(hist.mitigate_samples_s)} incidents) + "
        + (
            f"restart {restart:g} s (given)"
            if restart_overhead_s is not None
            else f"restart ASSUMED {restart:g} s"
        )
    )
    try:
        advice = goodput_math.checkpoint_advice(
            gpus=view.gpus,
            gpus_per_node=GPUS_PER_NODE,
            failures_per_node_day=rate,
            checkpoint_write_s=write,
            current_interval_s=view.checkpoint_interval_s,
            downtime_per_failure_s=mitigate + restart,
        )
    except ValueError as exc:
        raise ToolError(str(exc)) from exc
    return CheckpointAdviceView(
        job=view.name,
        gpus=view.gpus,
        failures_per_1000_node_days=round(rate * 1000, 4),
        failure_basis=rate_basis,
        job_mtbf_h=round(advice.job_mtbf_s / 3600, 3),
        checkpoint_write_s=write,
        write_basis=write_basis,
        current_interval_s=view.checkpoint_interval_s,
        young_interval_s=round(advice.young_interval_s, 1),
        advised_interval_s=round(advice.recommended_interval_s, 1),
        downtime_per_failure_s=round(advice.downtime_per_failure_s, 1),
        downtime_basis=downtime_basis,
        ettr_current=round(advice.ettr_current, 5),
        ettr_advised=round(advice.ettr_recommended, 5),
        ettr_gain=round(advice.ettr_gain, 5),
        gpu_hours_per_day_gained=round(advice.gpu_hours_per_day_gained, 2),
    )


Window = Annotated[float, Field(gt=0, le=365, description="days of incident history to count")]
Rate = Annotated[
    float | None,
    Field(gt=0, le=1000, description="failures per 1000 node-days instead of the incident history's"),
]


async def spare_advice(
    ctx: Context,
    target_p_dry: Annotated[
        float, Field(gt=0, lt=0.5, description="acceptable P(a node failure finds no spare free)")
    ] = 0.01,
    window_days: Window = 30.0,
    failures_per_1000_node_days: Rate = None,
    repair_hours: Annotated[
        float | None, Field(gt=0, le=24 * 30, description="mean repair time instead of the history's")
    ] = None,
    model: Annotated[
        Literal["poisson", "binomial"], Field(description="nodes in repair: Poisson or binomial")
    ] = "poisson",
    job: Annotated[str | None, Field(description="also price the pool in this job's ETTR")] = None,
) -> SpareAdviceView:
    """How many warm spares to keep: from the node-removing failures per node-day and the repair
    times in the incident history (or given), the fewest spares that keep the chance a failure
    finds the pool empty under the target (nodes in repair ~ Poisson, as ByteRobust sizes its
    standby), against the pool now and the policy's min_spares. With a job: its expected ETTR
    with the advised pool and with none. Read-only; the history must hold the figures or you
    pass them."""
    return await spare_advice_of(
        deps_of(ctx),
        target_p_dry=target_p_dry,
        window_days=window_days,
        failures_per_1000_node_days=failures_per_1000_node_days,
        repair_hours=repair_hours,
        model=model,
        job=job,
    )


async def checkpoint_advice(
    ctx: Context,
    job: Annotated[str, Field(description="job name")],
    checkpoint_write_s: Annotated[
        float | None, Field(gt=0, le=3600, description="blocking write time of one checkpoint, seconds")
    ] = None,
    window_days: Window = 30.0,
    failures_per_1000_node_days: Rate = None,
    restart_overhead_s: Annotated[
        float | None, Field(ge=0, le=7200, description="the job's restart overhead, seconds")
    ] = None,
) -> CheckpointAdviceView:
    """How often this job should checkpoint: Daly's optimum interval from its GPU count, its
    checkpoint write time and the fleet's failure rate per node-day (incident history, or
    given), and the ETTR it gains over the job's current interval (renewal model). Every input
    names its basis; an assumed one says ASSUMED. Read-only."""
    deps = deps_of(ctx)
    view = await readable(deps.backend.get_job(job))
    return await checkpoint_advice_of(
        deps,
        view,
        checkpoint_write_s=checkpoint_write_s,
        window_days=window_days,
        failures_per_1000_node_days=failures_per_1000_node_days,
        restart_overhead_s=restart_overhead_s,
    )


def register(server: MCPServer) -> None:
    server.add_tool(spare_advice, annotations=READ_ONLY)
    server.add_tool(checkpoint_advice, annotations=READ_ONLY)
    deps = getattr(server, "deps", None)
    if not isinstance(deps, ServerDeps):
        return  # a server without gpu-aiops deps serves the tools (they say so) but no resource

    @server.resource(
        "advice://spares",
        name="spare advice",
        description="The advised warm-spare pool (P(dry) < 1%) from the last 30 days of incidents",
        mime_type="application/json",
    )
    async def spares_resource() -> str:
        try:
            return (await spare_advice_of(deps)).model_dump_json(indent=1)
        except ToolError as exc:
            raise ResourceError(str(exc)) from exc
