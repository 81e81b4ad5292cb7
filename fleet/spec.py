"""What fleet to simulate: the shape of the cluster and the training jobs on it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fleet.clock import DEFAULT_EPOCH

_NAME = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"

# failure-rates.md, "Time to detect and recover": automated platforms restart a job with 5-15 min
# of overhead (MegaScale, ByteRobust). The default sits in the middle of that range.
DEFAULT_RESTART_OVERHEAD_S = 600.0

# The real HGX H100 (8-GPU baseboard) PCI bus numbers, GPU 0..7 in nvidia-smi order.
HGX_H100_PCI_BUSES: tuple[int, ...] = (0x18, 0x2A, 0x3A, 0x5D, 0x9A, 0xAB, 0xBA, 0xDB)


class JobSpec(BaseModel):
    """A data-parallel training job: a gang of whole nodes that steps, checkpoints and restarts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=_NAME, description="neutral, e.g. 'train-01'")
    nodes: int = Field(ge=1, description="gang size in nodes")
    gpus_per_node: int | None = Field(
        default=None,
        ge=1,
        description="GPUs it uses on each node (None: all of them). A job using part of its nodes "
        "shares them with the next such job of the same gang size while the GPUs fit",
    )
    step_time_s: float = Field(gt=0, description="wall time of one training step")
    checkpoint_interval_s: float = Field(gt=0, description="training time between checkpoints")
    checkpoint_write_s: float = Field(ge=0, description="blocking write time of one checkpoint")
    # failure-rates.md: 5-15 min restart overhead on automated platforms.
    restart_overhead_s: float = Field(
        default=DEFAULT_RESTART_OVERHEAD_S,
        ge=0,
        description="time a restart costs before steps resume (reschedule, load checkpoint, warm up)",
    )


class FleetSpec(BaseModel):
    """The cluster to build. Node ``i`` hangs off leaf ``i // nodes_per_leaf`` and sits in rack
    ``i // nodes_per_rack``; the last ``spare_nodes`` nodes form the warm spare pool, and jobs are
    packed in order onto the other nodes (contiguous nodes share a leaf, as a topology-aware
    scheduler would place them)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cluster: str = Field(default="sim-a", pattern=_NAME)
    seed: int = 0
    spine_switches: int = Field(default=1, ge=1)
    leaf_switches: int = Field(default=2, ge=1)
    nodes_per_leaf: int = Field(default=8, ge=1)
    nodes_per_rack: int = Field(default=4, ge=1)
    gpus_per_node: int = Field(default=8, ge=1, le=len(HGX_H100_PCI_BUSES))
    gpu_model: str = "NVIDIA H100 80GB HBM3"
    gpu_pci_device_id: str = Field(default="10de:2330", description="vendor:device of the H100 SXM5 80GB")
    driver_version: str = "550.127.05"
    spare_nodes: int = Field(default=2, ge=0, description="warm spares: in the topology, idle, labelled")
    jobs: list[JobSpec] = Field(default_factory=list)
    epoch: datetime = Field(default=DEFAULT_EPOCH, description="simulated start time (aware)")

    @field_validator("epoch")
    @classmethod
    def _aware_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("epoch must be timezone-aware")
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _jobs_fit(self) -> Self:
        names = [job.name for job in self.jobs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"job names must be unique; repeated: {', '.join(duplicates)}")
        if self.spare_nodes >= self.node_count:
            raise ValueError(f"{self.spare_nodes} spare nodes leave no worker nodes out of {self.node_count}")
        wide = [job.name for job in self.jobs if (job.gpus_per_node or 0) > self.gpus_per_node]
        if wide:
            raise ValueError(
                f"jobs {', '.join(wide)} want more GPUs per node than a node has ({self.gpus_per_node})"
            )
        needed = max((first + job.nodes for job, first, _ in self.packing()), default=0)
        if needed > self.worker_node_count:
            raise ValueError(
                f"jobs need {needed} nodes but only {self.worker_node_count} non-spare nodes exist "
                f"({self.node_count} nodes, {self.spare_nodes} spares)"
            )
        return self

    def packing(self) -> list[tuple[JobSpec, int, int]]:
        """Where each job goes: (job, index of its first worker node, its first GPU on each node).
        Jobs take consecutive worker nodes in order; a job using part of each node shares the
        previous job's nodes when that one also uses part of them, has the same gang size, and the
        GPUs left fit."""
        placed: list[tuple[JobSpec, int, int]] = []
        next_node = 0
        shared: tuple[int, int, int] | None = None  # (first node, gang size, next free GPU)
        for job in self.jobs:
            width = job.gpus_per_node or self.gpus_per_node
            if shared is not None and shared[1] == job.nodes and shared[2] + width <= self.gpus_per_node:
                placed.append((job, shared[0], shared[2]))
                shared = (shared[0], shared[1], shared[2] + width)
                continue
            placed.append((job, next_node, 0))
            shared = (next_node, job.nodes, width) if width < self.gpus_per_node else None
            next_node += job.nodes
        return placed

    @property
    def node_count(self) -> int:
        return self.leaf_switches * self.nodes_per_leaf

    @property
    def worker_node_count(self) -> int:
        return self.node_count - self.spare_nodes

    @classmethod
    def small(cls, seed: int = 0) -> FleetSpec:
        """16 nodes (128 GPUs) on 2 leaves under 1 spine, 2 warm spares, 2 jobs; for demo and tests.

        ``train-01`` spans leaf-01 (node-001..008), ``train-02`` node-009..012; node-013..014 idle,
        node-015..016 spares.
        """
        return cls(
            seed=seed,
            jobs=[
                JobSpec(
                    name="train-01",
                    nodes=8,
                    step_time_s=2.0,
                    checkpoint_interval_s=1800.0,
                    checkpoint_write_s=30.0,
                    restart_overhead_s=DEFAULT_RESTART_OVERHEAD_S,
                ),
                JobSpec(
                    name="train-02",
                    nodes=4,
                    step_time_s=1.5,
                    checkpoint_interval_s=1200.0,
                    checkpoint_write_s=20.0,
                    restart_overhead_s=480.0,
                ),
            ],
        )

    @classmethod
    def sized(cls, nodes: int, seed: int = 0) -> FleetSpec:
        """A fleet of ``nodes`` nodes (``AIOPS_FLEET_NODES``): 16 is ``small()``; any other size is
        leaves of ``NODES_PER_LEAF`` nodes in racks of 4 under one spine, about one node in fifty a
        warm spare (at least 2), and 8-node jobs packed one per leaf, as many idle nodes as spares
        left over. Raises ``ValueError`` with the rule a size breaks."""
        if nodes < MIN_SIZED_NODES or nodes % NODES_PER_LEAF:
            raise ValueError(
                f"a fleet twin has a multiple of {NODES_PER_LEAF} nodes (one leaf switch each), "
                f"at least {MIN_SIZED_NODES}; got {nodes}"
            )
        if nodes > MAX_SIZED_NODES:
            raise ValueError(f"a fleet twin has at most {MAX_SIZED_NODES} nodes; got {nodes}")
        if nodes == 16:
            return cls.small(seed=seed)
        spares = max(2, -(-nodes // 50))
        job_count = (nodes - 2 * spares) // NODES_PER_LEAF
        return cls(
            seed=seed,
            leaf_switches=nodes // NODES_PER_LEAF,
            nodes_per_leaf=NODES_PER_LEAF,
            nodes_per_rack=4,
            spare_nodes=spares,
            jobs=[
                JobSpec(
                    name=f"train-{i:0{max(2, len(str(job_count)))}d}",
                    nodes=NODES_PER_LEAF,
                    step_time_s=2.0,
                    checkpoint_interval_s=1800.0,
                    checkpoint_write_s=30.0,
                )
                for i in range(1, job_count + 1)
            ],
        )


NODES_PER_LEAF = 8
"""Nodes under one leaf switch in ``FleetSpec.sized`` (an HGX scalable unit's rail group)."""
MIN_SIZED_NODES = 16
MAX_SIZED_NODES = 16_384
