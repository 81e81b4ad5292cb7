"""Where each node sits in the cluster: its rack, InfiniBand leaf switch and NVLink domain.

Detectors use it to name the switch a slow job crosses; the agent uses it to find the one part that
concurrent faults on many nodes share. It is built from node labels (the fleet twin's
``aiops/leaf``/``aiops/rack``, Kubernetes' ``topology.kubernetes.io/*``, GPU feature discovery's
``nvidia.com/gpu.clique`` for multi-node NVLink domains) or given directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

PartKind = Literal["switch", "rack", "nvlink_domain"]
Part = tuple[PartKind, str]
"""A shared piece of the cluster: ("switch", "leaf-03"), ("rack", "rack-07"), ("nvlink_domain", ...)."""

LEAF_LABELS = ("aiops/leaf", "network.topology/leaf", "topology.kubernetes.io/leaf")
RACK_LABELS = ("aiops/rack", "topology.kubernetes.io/rack", "topology.kubernetes.io/zone")
CLIQUE_LABELS = ("nvidia.com/gpu.clique",)


@dataclass(frozen=True, slots=True)
class NodePlace:
    node: str
    leaf: str | None = None
    rack: str | None = None
    nvlink_domain: str | None = None
    """None when the NVLink domain is the node itself (HGX baseboards); a GB200 NVL72 rack otherwise."""


def _first(labels: Mapping[str, str], keys: Iterable[str]) -> str | None:
    return next((labels[k] for k in keys if labels.get(k)), None)


class FabricMap:
    """Node placement, and the reverse: which nodes hang off a part."""

    def __init__(self, places: Iterable[NodePlace] = ()) -> None:
        self._places: dict[str, NodePlace] = {}
        self._members: dict[Part, set[str]] = {}
        for place in places:
            self.add(place)

    @classmethod
    def from_labels(cls, nodes: Mapping[str, Mapping[str, str]]) -> FabricMap:
        """From ``{node: labels}``; unknown label sets just leave that part unknown."""
        return cls(
            NodePlace(
                node=name,
                leaf=_first(labels, LEAF_LABELS),
                rack=_first(labels, RACK_LABELS),
                nvlink_domain=_first(labels, CLIQUE_LABELS),
            )
            for name, labels in nodes.items()
        )

    def add(self, place: NodePlace) -> None:
        old = self._places.get(place.node)
        if old is not None:
            for part in self._parts_of(old):
                self._members.get(part, set()).discard(old.node)
        self._places[place.node] = place
        for part in self._parts_of(place):
            self._members.setdefault(part, set()).add(place.node)

    def __len__(self) -> int:
        return len(self._places)

    def __contains__(self, node: object) -> bool:
        return node in self._places

    def place(self, node: str) -> NodePlace | None:
        return self._places.get(node)

    def leaf(self, node: str) -> str | None:
        place = self._places.get(node)
        return place.leaf if place else None

    def rack(self, node: str) -> str | None:
        place = self._places.get(node)
        return place.rack if place else None

    def parts(self, node: str) -> list[Part]:
        """Every shared part the node hangs off (the node itself is not a part)."""
        place = self._places.get(node)
        return self._parts_of(place) if place else []

    def members(self, part: Part) -> frozenset[str]:
        """The nodes under ``part``."""
        return frozenset(self._members.get(part, ()))

    def leaves_of(self, nodes: Iterable[str]) -> list[str]:
        """The distinct leaf switches of ``nodes``, sorted."""
        return sorted({leaf for n in nodes if (leaf := self.leaf(n))})

    @staticmethod
    def _parts_of(place: NodePlace) -> list[Part]:
        parts: list[Part] = []
        if place.leaf:
            parts.append(("switch", place.leaf))
        if place.rack:
            parts.append(("rack", place.rack))
        if place.nvlink_domain:
            parts.append(("nvlink_domain", place.nvlink_domain))
        return parts
