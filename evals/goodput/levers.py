"""The study's lever settings, built with the same advice math the platform's MCP tools use
(``skills.goodput_math``): the baseline, each lever alone, and all of them together.

- ``baseline``: the job checkpoints at Young's interval for the *assumed* default failure rate
  (4 per 1000 node-days: a job's configured interval, not re-tuned to what the fleet does), the warm
  pool holds ~4 spares per 1,024 nodes (ByteRobust), every removed node goes to a person's repair.
- ``checkpoint``: Daly's optimum for the fleet's observed rate (``checkpoint_advice``).
- ``spares``: the pool ``spare_advice`` gives for P(dry) < ``SPARE_TARGET`` with the repair times
  the fleet has (a person's repair without the repair lever).
- ``precursors``: pre-emptive removal, a flagged node swapped out at the job's next stop
  (``Levers.precursors``, policy ``next_restart``); ``precursors_drain``: the same flags, the job
  drained at its next checkpoint boundary (policy ``drain``); ``precursors_agent``: what the agent
  does (``agents/preemptive.py``): the next stop within 6 h, else a drain at the checkpoint boundary.
- ``repair``: the platform's reset / reboot / verify before a ticket (``Levers.fast_repair``).
- ``numerics``: the numerics detector and the ``locate-corruption`` runbook find silent data
  corruption from the job's loss and gradient norm (``Levers.numerics``; the share it sees is the
  assumption ``operators.SDC_NUMERICS_RECALL``).
- ``all``: every lever; spare sizing then uses the shorter repair times. ``all_but_precursors``:
  the levers that rest on no assumed precursor share.
"""

from __future__ import annotations

import math
from dataclasses import replace

from evals.goodput.causes import CAUSES, Cause
from evals.goodput.simulate import DAY, FleetCase, Levers
from skills.goodput_math import daly_interval_s, spare_advice, young_interval_s

ASSUMED_RATE = 4.0  # per 1000 node-days: the rate a job's configured interval was tuned for
SPARE_TARGET = 0.01  # P(a node failure finds the pool dry): ByteRobust sizes at the P99
LEVERS = (
    "checkpoint",
    "spares",
    "precursors",
    "precursors_drain",
    "precursors_agent",
    "repair",
    "numerics",
    "all_but_precursors",
    "all",
)
REPAIR_SIGMA = 0.5  # the simulator's lognormal spread of a person's repair


def baseline_case(case: FleetCase) -> FleetCase:
    rate = case.nodes * ASSUMED_RATE / 1000 / DAY
    return replace(case, checkpoint_interval_s=young_interval_s(case.checkpoint_write_s, 1 / rate))


def advised_case(case: FleetCase) -> FleetCase:
    return replace(
        case, checkpoint_interval_s=daly_interval_s(case.checkpoint_write_s, 1 / case.failure_rate_per_s)
    )


def mean_repair_s(case: FleetCase, fast: Levers | None, causes: tuple[Cause, ...] = CAUSES) -> float:
    """Mean time a removed node spends in repair, over the persistent causes' mix."""
    ticket = case.repair_median_s * math.exp(REPAIR_SIGMA**2 / 2)
    persistent = [c for c in causes if c.persistent]
    weight = sum(c.share for c in persistent)
    if fast is None:
        return ticket
    return (
        sum(c.share * (c.reset_fixes * fast.fast_repair_s + (1 - c.reset_fixes) * ticket) for c in persistent)
        / weight
    )


def node_removals_per_day(case: FleetCase, causes: tuple[Cause, ...] = CAUSES) -> float:
    persistent = sum(c.share for c in causes if c.persistent) / sum(c.share for c in causes)
    return case.failure_rate_per_s * DAY * persistent


def advised_spares(case: FleetCase, fast: Levers | None, causes: tuple[Cause, ...] = CAUSES) -> int:
    """``spare_advice`` for the case: node removals by persistent faults (repaired by a person, or
    first by the platform with ``fast.fast_repair``), plus the healthy nodes pre-emptive removal
    flags when ``fast.precursors`` (each out for its verification)."""
    removals, repair = (
        node_removals_per_day(case),
        mean_repair_s(case, fast if fast and fast.fast_repair else None),
    )
    busy = removals * repair
    if fast is not None and fast.precursors:
        covered = sum(c.share * c.precursor for c in causes) / sum(c.share for c in causes)
        flagged = case.failure_rate_per_s * DAY * covered * fast.false_drains_per_catch
        removals, busy = removals + flagged, busy + flagged * fast.false_drain_verify_s
    return spare_advice(
        nodes=case.nodes,
        node_failures_per_day=removals,
        mean_repair_s=busy / removals,
        target_p_dry=SPARE_TARGET,
    ).spares


def setting(case: FleetCase, lever: str, repair_s: float | None = None) -> tuple[FleetCase, Levers]:
    """The case and levers for ``lever`` ('baseline' or one of ``LEVERS``); ``repair_s``: the
    platform's repair turnaround (measured: ``evals.goodput.measured.repair_from``)."""
    base = baseline_case(case)
    repair = {} if repair_s is None else {"fast_repair_s": repair_s}
    if lever == "baseline":
        return base, Levers()
    if lever == "checkpoint":
        return advised_case(case), Levers()
    if lever == "spares":
        return base, Levers(spares=advised_spares(case, None))
    if lever == "precursors":
        return base, Levers(precursors=True)
    if lever == "precursors_drain":
        return base, Levers(precursors=True, precursor_policy="drain")
    if lever == "precursors_agent":
        return base, Levers(precursors=True, precursor_policy="next_stop_or_drain")
    if lever == "repair":
        return base, Levers(fast_repair=True, **repair)
    if lever == "numerics":
        return base, Levers(numerics=True)
    if lever == "all_but_precursors":
        fast = Levers(fast_repair=True, **repair)
        return advised_case(case), replace(fast, spares=advised_spares(case, fast))
    if lever == "all":
        fast = Levers(
            precursors=True, precursor_policy="next_stop_or_drain", fast_repair=True, numerics=True, **repair
        )
        return advised_case(case), replace(fast, spares=advised_spares(case, fast))
    raise ValueError(f"unknown lever {lever!r}; known: baseline, {', '.join(LEVERS)}")
