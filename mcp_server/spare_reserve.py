"""The warm-spare count the incident history advises, and the reserve the gate keeps.

``advise_spares`` sizes the pool from the history (``incident_history``) with ``skills.goodput_math``
(the same math the fleet goodput study uses): node-removing incidents per node-day, the mean repair
time (mitigated to resolved), the fewest spares keeping P(a failure finds the pool dry) under the
target. A figure the history lacks must be given; ``NoHistory`` says which.

``reserve``: the ``min_spares`` the gate's reserve rule (policy ``spare-reserve-needs-approval``)
compares against. A number in the settings is that number. ``AIOPS_MIN_SPARES=auto`` makes it follow
the advice (target P(dry) < 1%, 30 days of history), never below ``AIOPS_MIN_SPARES_FLOOR``; while
the history holds no node removal or no repair to size from, it is the floor, and the answer says so
(``Reserve.basis``), as do ``spare_pool`` and ``safety_status``.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from mcp_server.incident_history import History, HistoryTooLong, history
from skills import goodput_math

if TYPE_CHECKING:
    from mcp_server.deps import ServerDeps

AUTO_TARGET_P_DRY = 0.01
AUTO_WINDOW_DAYS = 30.0


class NoHistory(ValueError):
    """The history holds no figure to size from, and the caller gave none."""


@dataclass(frozen=True)
class SizedPool:
    advice: goodput_math.SpareAdvice
    rate_per_node_day: float
    rate_basis: str
    repair_s: float
    repair_basis: str


def rate_of(given: float | None, count: int, hist: History, what: str) -> tuple[float, str]:
    """Failures per node-day: given (per 1000 node-days) or counted; none counted is ``NoHistory``."""
    if given is not None:
        return given / 1000, f"given: {given} per 1000 node-days"
    if count == 0:
        raise NoHistory(
            f"no {what} in the incident history of the last {hist.window_days:g} days to measure a "
            "failure rate from: pass failures_per_1000_node_days (published fleets: 2.3-6.5, default ~4)"
        )
    return count / hist.node_days, (
        f"incident history: {count} {what} over {hist.nodes} nodes x {hist.window_days:g} days"
    )


def advise_spares(
    hist: History,
    *,
    target_p_dry: float = AUTO_TARGET_P_DRY,
    failures_per_1000_node_days: float | None = None,
    repair_hours: float | None = None,
    model: Literal["poisson", "binomial"] = "poisson",
    job_gpus: int | None = None,
    checkpoint_interval_s: float | None = None,
    swap_downtime_s: float = 600.0,
) -> SizedPool:
    """The advised pool for the history (or the figures given); ``ValueError`` on bad figures."""
    rate, rate_basis = rate_of(
        failures_per_1000_node_days, hist.node_removals, hist, "node-removing incidents"
    )
    if repair_hours is not None:
        repair_s, repair_basis = repair_hours * 3600, f"given: {repair_hours} h"
    elif hist.repair_samples_s:
        repair_s = statistics.fmean(hist.repair_samples_s)
        repair_basis = (
            f"incident history: mean of {len(hist.repair_samples_s)} repairs (mitigated to resolved)"
        )
    else:
        raise NoHistory(
            f"no repaired (resolved) hardware incidents in the last {hist.window_days:g} days to measure "
            "repair time from: pass repair_hours (published: 2.2 h mean by a person, minutes for a reset or reboot)"
        )
    advice = goodput_math.spare_advice(
        nodes=hist.nodes,
        node_failures_per_day=rate * hist.nodes,
        mean_repair_s=repair_s,
        target_p_dry=target_p_dry,
        model=model,
        job_gpus=job_gpus,
        checkpoint_interval_s=checkpoint_interval_s,
        swap_downtime_s=swap_downtime_s,
    )
    return SizedPool(advice, rate, rate_basis, repair_s, repair_basis)


@dataclass(frozen=True)
class Reserve:
    spares: int
    basis: str


async def reserve(deps: ServerDeps) -> Reserve:
    """The reserve the gate keeps now (see the module docstring)."""
    limits = deps.limits
    if not limits.min_spares_auto:
        return Reserve(limits.min_spares, f"configured: min_spares {limits.min_spares}")
    floor = limits.min_spares
    try:
        sized = advise_spares(await history(deps, AUTO_WINDOW_DAYS))
    except (NoHistory, HistoryTooLong) as exc:
        return Reserve(floor, f"auto: the floor {floor}, spare_advice has nothing to size from ({exc})")
    advised = sized.advice.spares
    return Reserve(
        max(floor, advised),
        f"auto: spare_advice {advised} (P(dry) {sized.advice.p_dry:.4f} < {AUTO_TARGET_P_DRY}; "
        f"{sized.rate_basis}; {sized.repair_basis}), floor {floor}",
    )
