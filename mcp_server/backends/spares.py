"""The spare pool as every backend reports it: one view per spare, and the candidate a swap takes
(a fit spare on the failed member's leaf switch first, then the lowest name)."""

from __future__ import annotations

from contracts.tools import NodeSummary, SparePool, SpareView


def spare_view(summary: NodeSummary, why_unfit: str | None) -> SpareView:
    return SpareView(
        name=summary.name,
        rack=summary.rack,
        leaf_switch=summary.leaf_switch,
        fit=why_unfit is None,
        why_unfit=why_unfit,
    )


def pool_of(spares: list[SpareView], leaf: str | None) -> SparePool:
    """The pool; with ``leaf`` (the failed member's switch), also the spare a swap would take."""
    pool = SparePool(spares=spares, fit=sum(1 for s in spares if s.fit))
    if leaf is not None:
        fit = sorted((s for s in spares if s.fit), key=lambda s: (s.leaf_switch != leaf, s.name))
        if fit:
            pool.candidate = fit[0].name
            pool.candidate_why = (
                "same leaf switch" if fit[0].leaf_switch == leaf else "lowest name; no fit spare on the leaf"
            )
    return pool
