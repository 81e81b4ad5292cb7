"""Goodput arithmetic the platform advises with: checkpoint intervals and warm-spare pools.

Pure functions, no I/O; the MCP advice tools (``mcp_server/tools/advice.py``) and the fleet goodput
study (``evals/goodput/``) both use them, so the study measures exactly what the platform advises.

- Checkpoint interval. Young (1974): τ* = √(2δM) for a blocking write of δ seconds and a mean time
  between failures M. Daly (2006), the higher-order optimum: τ* = √(2δM)·[1 + ⅓√(δ/2M) + ⅑(δ/2M)] - δ
  for δ < 2M, else τ* = M.
- ETTR of a job under a renewal model: failures arrive as a Poisson process of rate λ; the job
  trains in cycles of τ seconds of training plus δ of checkpoint write; a failure loses the cycle in
  progress (the work since the last durable checkpoint) and stops the job for D seconds (detection,
  recovery, restart overhead), during which further failures cost nothing more. Uptime after each
  restart is Exp(λ), so the completed cycles per uptime have mean q/(1-q), q = e^{-λ(τ+δ)}, and
  ETTR = τ·q/(1-q) / (1/λ + D). This is exact for the study's simulator (its correctness test).
- Warm spares. A node taken out by a persistent fault is in repair for a mean R seconds; with node
  failures arriving at rate Λ, the number in repair at any moment is Poisson with mean Λ·R (M/G/∞),
  or binomial over the fleet's nodes (each in repair with probability Λ·R / nodes), the model
  ByteRobust sizes its warm standby with. A failure finds the pool dry when s or more nodes are in
  repair (PASTA): P(dry) = P(N ≥ s). The advice is the smallest s with P(dry) < target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

DAY_S = 86_400.0
SpareModel = Literal["poisson", "binomial"]


def _positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0 or math.isinf(value):
            raise ValueError(f"{name} must be a positive finite number, got {value}")


def young_interval_s(write_s: float, mtbf_s: float) -> float:
    """Young's optimum checkpoint interval (seconds of training between checkpoints)."""
    _positive(write_s=write_s, mtbf_s=mtbf_s)
    return math.sqrt(2 * write_s * mtbf_s)


def daly_interval_s(write_s: float, mtbf_s: float) -> float:
    """Daly's higher-order optimum; equals the MTBF when the write takes two MTBFs or more."""
    _positive(write_s=write_s, mtbf_s=mtbf_s)
    if write_s >= 2 * mtbf_s:
        return mtbf_s
    x = write_s / (2 * mtbf_s)
    return math.sqrt(2 * write_s * mtbf_s) * (1 + math.sqrt(x) / 3 + x / 9) - write_s


def renewal_ettr(interval_s: float, write_s: float, failure_rate_per_s: float, downtime_s: float) -> float:
    """Expected ETTR of a job under the renewal model in the module docstring."""
    _positive(interval_s=interval_s, failure_rate_per_s=failure_rate_per_s)
    if write_s < 0 or downtime_s < 0:
        raise ValueError(f"write_s and downtime_s must be >= 0, got {write_s} and {downtime_s}")
    q = math.exp(-failure_rate_per_s * (interval_s + write_s))
    cycles = q / (1 - q) if q < 1 else math.inf
    return interval_s * cycles / (1 / failure_rate_per_s + downtime_s)


@dataclass(frozen=True)
class CheckpointAdvice:
    gpus: int
    nodes: int
    failures_per_node_day: float
    job_mtbf_s: float
    checkpoint_write_s: float
    current_interval_s: float
    young_interval_s: float
    recommended_interval_s: float
    downtime_per_failure_s: float
    ettr_current: float
    ettr_recommended: float

    @property
    def ettr_gain(self) -> float:
        """ETTR at the recommended interval minus ETTR at the current one."""
        return self.ettr_recommended - self.ettr_current

    @property
    def gpu_hours_per_day_gained(self) -> float:
        return self.ettr_gain * self.gpus * 24


def checkpoint_advice(
    *,
    gpus: int,
    gpus_per_node: int,
    failures_per_node_day: float,
    checkpoint_write_s: float,
    current_interval_s: float,
    downtime_per_failure_s: float,
) -> CheckpointAdvice:
    """Daly's optimum for a job of ``gpus`` GPUs on nodes failing at ``failures_per_node_day`` each,
    and the ETTR it gives against the job's current interval (renewal model, same downtime)."""
    if gpus < 1 or gpus_per_node < 1:
        raise ValueError(f"gpus and gpus_per_node must be >= 1, got {gpus} and {gpus_per_node}")
    _positive(
        failures_per_node_day=failures_per_node_day,
        checkpoint_write_s=checkpoint_write_s,
        current_interval_s=current_interval_s,
    )
    nodes = math.ceil(gpus / gpus_per_node)
    rate = nodes * failures_per_node_day / DAY_S
    mtbf = 1 / rate
    best = daly_interval_s(checkpoint_write_s, mtbf)
    return CheckpointAdvice(
        gpus=gpus,
        nodes=nodes,
        failures_per_node_day=failures_per_node_day,
        job_mtbf_s=mtbf,
        checkpoint_write_s=checkpoint_write_s,
        current_interval_s=current_interval_s,
        young_interval_s=young_interval_s(checkpoint_write_s, mtbf),
        recommended_interval_s=best,
        downtime_per_failure_s=downtime_per_failure_s,
        ettr_current=renewal_ettr(current_interval_s, checkpoint_write_s, rate, downtime_per_failure_s),
        ettr_recommended=renewal_ettr(best, checkpoint_write_s, rate, downtime_per_failure_s),
    )


def poisson_tail(mean: float, k: int) -> float:
    """P(N ≥ k) for N ~ Poisson(mean)."""
    if mean < 0:
        raise ValueError(f"mean must be >= 0, got {mean}")
    if k <= 0:
        return 1.0
    if mean == 0:
        return 0.0
    term = math.exp(-mean)
    below = term
    for i in range(1, k):
        term *= mean / i
        below += term
    return max(0.0, 1.0 - below)


def binomial_tail(n: int, p: float, k: int) -> float:
    """P(N ≥ k) for N ~ Binomial(n, p)."""
    if not 0 <= p <= 1:
        raise ValueError(f"p must be in [0, 1], got {p}")
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p == 0:
        return 0.0
    if p == 1:
        return 1.0

    def pmf(i: int) -> float:
        log = math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
        return math.exp(log + i * math.log(p) + (n - i) * math.log1p(-p))

    return max(0.0, 1.0 - sum(pmf(i) for i in range(k)))


@dataclass(frozen=True)
class SpareAdvice:
    nodes: int
    node_failures_per_day: float = 0.0
    mean_repair_s: float = 0.0
    mean_in_repair: float = 0.0
    target_p_dry: float = 0.0
    model: SpareModel = "poisson"
    spares: int = 0
    p_dry: float = 0.0
    p_dry_without: float = 1.0
    ettr_with: float | None = None
    ettr_without: float | None = None


def p_dry(
    spares: int, *, nodes: int, node_failures_per_day: float, mean_repair_s: float, model: SpareModel
) -> float:
    """Probability that a node failure finds none of ``spares`` warm spares free."""
    mean = node_failures_per_day * mean_repair_s / DAY_S
    if model == "poisson":
        return poisson_tail(mean, spares)
    return binomial_tail(nodes, min(1.0, mean / nodes), spares)


def spare_advice(
    *,
    nodes: int,
    node_failures_per_day: float,
    mean_repair_s: float,
    target_p_dry: float = 0.01,
    model: SpareModel = "poisson",
    job_gpus: int | None = None,
    gpus_per_node: int = 8,
    checkpoint_interval_s: float | None = None,
    checkpoint_write_s: float = 10.0,
    swap_downtime_s: float = 600.0,
    dry_downtime_s: float | None = None,
) -> SpareAdvice:
    """The fewest warm spares keeping P(dry) under ``target_p_dry`` for a fleet of ``nodes`` nodes
    whose persistent faults take ``node_failures_per_day`` nodes out, each for ``mean_repair_s``.

    With ``job_gpus``: the expected ETTR of a job of that size with the advised pool and with none
    (downtime per failure ``swap_downtime_s`` when a spare is free, else ``dry_downtime_s``, by
    default the swap plus a mean repair; checkpoint interval Daly's optimum unless given)."""
    if nodes < 1:
        raise ValueError(f"nodes must be >= 1, got {nodes}")
    _positive(mean_repair_s=mean_repair_s)
    if node_failures_per_day < 0:
        raise ValueError(f"node_failures_per_day must be >= 0, got {node_failures_per_day}")
    if not 0 < target_p_dry < 1:
        raise ValueError(f"target_p_dry must be in (0, 1), got {target_p_dry}")
    args = {
        "nodes": nodes,
        "node_failures_per_day": node_failures_per_day,
        "mean_repair_s": mean_repair_s,
        "model": model,
    }
    spares = 0
    while (dry := p_dry(spares, **args)) >= target_p_dry:  # type: ignore[arg-type]
        spares += 1
    advice = SpareAdvice(
        nodes=nodes,
        node_failures_per_day=node_failures_per_day,
        mean_repair_s=mean_repair_s,
        mean_in_repair=node_failures_per_day * mean_repair_s / DAY_S,
        target_p_dry=target_p_dry,
        model=model,
        spares=spares,
        p_dry=dry,
        p_dry_without=p_dry(0, **args),  # type: ignore[arg-type]
    )
    if job_gpus is None or node_failures_per_day == 0:
        return advice
    job_nodes = math.ceil(job_gpus / gpus_per_node)
    rate = node_failures_per_day / nodes * job_nodes / DAY_S
    interval = checkpoint_interval_s or daly_interval_s(checkpoint_write_s, 1 / rate)
    dry_down = swap_downtime_s + mean_repair_s if dry_downtime_s is None else dry_downtime_s

    def ettr(p: float) -> float:
        down = (1 - p) * swap_downtime_s + p * dry_down
        return renewal_ettr(interval, checkpoint_write_s, rate, down)

    return SpareAdvice(**{**advice.__dict__, "ettr_with": ettr(dry), "ettr_without": ettr(1.0)})
