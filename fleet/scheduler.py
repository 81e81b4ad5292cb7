"""Gang re-placement before a restart: swap unfit gang members for warm spares, all or nothing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from fleet.topology import Node


@dataclass(frozen=True)
class GangPlan:
    swaps: list[tuple[str, str, str]] = field(default_factory=list)
    """(old node, spare node, why the old node cannot host its rank)."""
    blocked: list[str] = field(default_factory=list)
    """Why the gang cannot be placed: unfit members left over when the spare pool ran dry."""

    @property
    def placeable(self) -> bool:
        return not self.blocked


def plan_gang(gang: list[str], nodes: Mapping[str, Node], gpus: int | Sequence[int]) -> GangPlan:
    """Plan the gang's placement: every member must offer ``gpus_per_node`` healthy, non-isolated
    GPUs, be ready and not cordoned; each unfit member is replaced by a fit spare, preferring one on
    the same leaf switch (fewer hops for the collectives), then the lowest name. When the pool cannot
    cover every unfit member no spare is taken (gang scheduling: all ranks or none)."""
    wanted = range(gpus) if isinstance(gpus, int) else gpus  # the GPUs each member runs a rank on
    unfit = [(name, reason) for name in gang if (reason := nodes[name].unfit_for(wanted))]
    pool = [n for n in nodes.values() if n.spare and n.unfit_for(wanted) is None]
    swaps: list[tuple[str, str, str]] = []
    blocked: list[str] = []
    for name, reason in unfit:
        leaf = nodes[name].leaf
        candidates = sorted(pool, key=lambda spare: (spare.leaf != leaf, spare.name))
        if not candidates:
            blocked.append(f"{reason}; no spare node left")
            continue
        spare = candidates[0]
        pool.remove(spare)
        swaps.append((name, spare.name, reason))
    return GangPlan(swaps=[] if blocked else swaps, blocked=blocked)
