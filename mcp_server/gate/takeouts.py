"""Take-outs are counted before they happen, in one compare-and-set write that re-checks the breaker.

The policy reads the breaker's state to decide; two callers taking nodes out at the same moment
(agent replicas, a person and an agent) would both pass on the same read. So before the guard
performs a take-out it appends it to the breaker's log with compare-and-set, re-checking there: the
call whose take-out would pass the threshold trips the breaker and is refused, and a call that finds
the breaker open since its read is refused too. A take-out that then fails or changes nothing is
taken back (``release``); one that fails unexpectedly stays counted (the breaker errs towards
stopping).
"""

from __future__ import annotations

from dataclasses import dataclass

from mcp_server.deps import ServerDeps
from mcp_server.gate.breaker import BreakerState, TakeOut, share_pct, would_trip


@dataclass
class Verdict:
    refused: str | None = None  # why, when the take-out may not go ahead
    tripped: bool = False  # this take-out tripped the breaker


async def reserve(deps: ServerDeps, entry: TakeOut, target: str, cluster_nodes: int) -> Verdict:
    limits = deps.limits
    window_s = limits.breaker_window_s
    verdict = Verdict()

    def change(state: BreakerState) -> None:
        verdict.refused, verdict.tripped = None, False  # a compare-and-set retry starts over
        if state.open:
            verdict.refused = state.trip_reason or "the circuit breaker is open"
            return
        projected = sorted(set(state.nodes_taken_out(entry.time, window_s)) | {entry.node})
        if would_trip(len(projected), cluster_nodes, limits.breaker_threshold_pct):
            pct = share_pct(len(projected), cluster_nodes)
            reason = (
                f"{entry.action} on {target} would have taken {len(projected)} of {cluster_nodes} "
                f"nodes ({pct}%) out within {window_s:g} s, past the threshold of "
                f"{limits.breaker_threshold_pct}%: {', '.join(projected)}"
            )
            state.open, state.tripped_at, state.trip_reason = True, entry.time, reason
            state.taken_out_at_trip = projected
            state.trips += 1
            verdict.refused, verdict.tripped = reason, True
            return
        state.takeouts.append(entry)
        state.takeouts = [t for t in state.takeouts if (entry.time - t.time).total_seconds() <= window_s]

    await deps.breaker.update(deps.backend.cluster, change)
    return verdict


async def release(deps: ServerDeps, entry: TakeOut) -> None:
    """Take back a take-out whose action failed or changed nothing."""

    def change(state: BreakerState) -> None:
        if entry in state.takeouts:
            state.takeouts.remove(entry)

    await deps.breaker.update(deps.backend.cluster, change)
