"""The world: racks, InfiniBand spine and leaf switches, nodes and their GPUs.

The fabric is a two-level fat tree: every leaf connects to every spine, so switches refer to each
other by name instead of nesting (a leaf has more than one parent when there are several spines).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, Field

from fleet.spec import HGX_H100_PCI_BUSES, FleetSpec

GpuHealth = Literal["healthy", "fallen_off_bus", "error"]
NodeState = Literal["ready", "not_ready", "rebooting"]

LABEL_RACK = "aiops/rack"
LABEL_LEAF = "aiops/leaf"
LABEL_POOL = "aiops/pool"
POOL_SPARE = "spare"
POOL_TRAINING = "training"


class Gpu(BaseModel):
    index: int = Field(description="index on the node, nvidia-smi order")
    uuid: str = Field(description="GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx")
    pci_bus_id: str = Field(description="normalised: 0000:18:00.0")
    health: GpuHealth = "healthy"
    isolated: bool = False
    isolation_reason: str | None = None
    last_xid: int | None = None

    @property
    def schedulable(self) -> bool:
        """Healthy and not isolated: new work may land on it."""
        return self.health == "healthy" and not self.isolated

    @property
    def condition(self) -> str:
        """Health plus isolation in words, e.g. ``fallen_off_bus, isolated``."""
        return self.health + (", isolated" if self.isolated else "")


class Node(BaseModel):
    name: str
    rack: str
    leaf: str = Field(description="InfiniBand leaf switch the node hangs off")
    labels: dict[str, str] = Field(default_factory=dict)
    cordoned: bool = False
    cordon_owner: str | None = None
    state: NodeState = "ready"
    spare: bool = False
    gpus: list[Gpu] = Field(description="every GPU the twin knows of, including ones off the bus")

    @property
    def visible_gpus(self) -> list[Gpu]:
        """The GPUs the driver still sees (a GPU that fell off the bus disappears from nvidia-smi)."""
        return [gpu for gpu in self.gpus if gpu.health != "fallen_off_bus"]

    @property
    def schedulable_gpu_count(self) -> int:
        return sum(1 for gpu in self.gpus if gpu.schedulable)

    def unfit_for(self, indices: Sequence[int]) -> str | None:
        """Why a gang member using GPUs ``indices`` cannot run here, or None when it can."""
        if self.cordoned:
            return f"{self.name} is cordoned by {self.cordon_owner!r}"
        if self.state != "ready":
            return f"{self.name} is {self.state}"
        if set(indices) >= {gpu.index for gpu in self.gpus}:
            return self.unfit_reason(len(self.gpus))  # the whole node
        bad = [
            f"GPU {gpu.index} {gpu.condition}"
            for gpu in self.gpus
            if gpu.index in indices and not gpu.schedulable
        ]
        return f"{self.name} has unusable GPUs for the job ({', '.join(bad)})" if bad else None

    def unfit_reason(self, gpus_needed: int) -> str | None:
        """Why a gang member cannot run here, or None when the node can host it."""
        if self.cordoned:
            return f"{self.name} is cordoned by {self.cordon_owner!r}"
        if self.state != "ready":
            return f"{self.name} is {self.state}"
        if self.schedulable_gpu_count < gpus_needed:
            bad = [f"GPU {gpu.index} {gpu.condition}" for gpu in self.gpus if not gpu.schedulable]
            return (
                f"{self.name} has {self.schedulable_gpu_count}/{gpus_needed} usable GPUs ({', '.join(bad)})"
            )
        return None


class LeafSwitch(BaseModel):
    name: str
    fabric: Literal["infiniband"] = "infiniband"
    spines: list[str] = Field(description="uplinks: every spine, in a fat tree")
    nodes: list[str]


class SpineSwitch(BaseModel):
    name: str
    fabric: Literal["infiniband"] = "infiniband"
    leaves: list[str]


class Rack(BaseModel):
    name: str
    nodes: list[str]


class Cluster(BaseModel):
    name: str
    gpu_model: str
    driver_version: str
    spines: dict[str, SpineSwitch]
    leaves: dict[str, LeafSwitch]
    racks: dict[str, Rack]
    nodes: dict[str, Node] = Field(description="by name, in node order")


def pci_bus_id(bus: int, domain: int = 0) -> str:
    """The normalised PCI id of function 0 on ``bus``: ``0000:18:00.0``."""
    return f"{domain:04x}:{bus:02x}:00.0"


def gpu_uuid(rng: random.Random) -> str:
    """An nvidia-smi style UUID (``GPU-`` + 8-4-4-4-12 hex) drawn from ``rng``."""
    return f"GPU-{uuid.UUID(int=rng.getrandbits(128))}"


def _name(prefix: str, number: int, width: int) -> str:
    return f"{prefix}-{number:0{width}d}"


def build_cluster(spec: FleetSpec, rng: random.Random) -> Cluster:
    """Lay out the cluster ``spec`` describes; GPU UUIDs come from ``rng`` in node, then GPU order."""
    node_width = max(3, len(str(spec.node_count)))
    spine_names = [_name("spine", i + 1, 2) for i in range(spec.spine_switches)]
    leaf_names = [_name("leaf", i + 1, 2) for i in range(spec.leaf_switches)]
    rack_count = -(-spec.node_count // spec.nodes_per_rack)
    rack_names = [_name("rack", i + 1, max(2, len(str(rack_count)))) for i in range(rack_count)]
    first_spare = spec.node_count - spec.spare_nodes
    product = spec.gpu_model.replace(" ", "-")

    nodes: dict[str, Node] = {}
    for i in range(spec.node_count):
        name = _name("node", i + 1, node_width)
        rack, leaf = rack_names[i // spec.nodes_per_rack], leaf_names[i // spec.nodes_per_leaf]
        spare = i >= first_spare
        gpus = [
            Gpu(index=g, uuid=gpu_uuid(rng), pci_bus_id=pci_bus_id(HGX_H100_PCI_BUSES[g]))
            for g in range(spec.gpus_per_node)
        ]
        labels = {
            "nvidia.com/gpu.product": product,
            "nvidia.com/gpu.count": str(spec.gpus_per_node),
            "nvidia.com/gpu.driver": spec.driver_version,
            LABEL_RACK: rack,
            LABEL_LEAF: leaf,
            LABEL_POOL: POOL_SPARE if spare else POOL_TRAINING,
        }
        nodes[name] = Node(name=name, rack=rack, leaf=leaf, labels=labels, spare=spare, gpus=gpus)

    node_names = list(nodes)
    leaves = {
        leaf: LeafSwitch(
            name=leaf,
            spines=list(spine_names),
            nodes=node_names[i * spec.nodes_per_leaf : (i + 1) * spec.nodes_per_leaf],
        )
        for i, leaf in enumerate(leaf_names)
    }
    spines = {spine: SpineSwitch(name=spine, leaves=list(leaf_names)) for spine in spine_names}
    racks = {
        rack: Rack(name=rack, nodes=node_names[i * spec.nodes_per_rack : (i + 1) * spec.nodes_per_rack])
        for i, rack in enumerate(rack_names)
    }
    return Cluster(
        name=spec.cluster,
        gpu_model=spec.gpu_model,
        driver_version=spec.driver_version,
        spines=spines,
        leaves=leaves,
        racks=racks,
        nodes=nodes,
    )
