"""A real Slurm cluster per test (munged, slurmctld, four emulated slurmd with 8 GPU GRES each,
~0.5 s to start) and the backend over it; gpu-node-004 is the spare partition's node."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mcp_server.backends.slurm import SlurmBackend, SlurmConfig
from tests.mcp_server.backends.slurm.cluster import SlurmCluster

CHECKPOINTED = (
    "gpu-aiops: step=1200 step_time_s=1.25 baseline_step_s=1.2 checkpoint_step=1000 "
    "checkpoint_at=2026-12-07T04:00:00Z checkpoint_interval_s=600"
)


@contextmanager
def loopback(spares: list[str]) -> Iterator[SlurmCluster]:
    # A short root: slurmstepd's socket paths under it must stay within 108 bytes (pytest's
    # tmp_path is too deep for them).
    root = Path(tempfile.mkdtemp(prefix="slurm-"))
    cluster = SlurmCluster(root, spares=spares)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    assert not cluster.leftovers(), f"Slurm processes outlived the test: {cluster.leftovers()}"


@pytest.fixture
def slurm() -> Iterator[SlurmCluster]:
    with loopback(["gpu-node-004"]) as cluster:
        yield cluster


@pytest.fixture
def backend(slurm: SlurmCluster) -> SlurmBackend:
    return SlurmBackend.connect(
        SlurmConfig(cluster="loopback", conf=slurm.conf, spare_partition="spares", timeout_s=20)
    )


def submit(
    cluster: SlurmCluster, nodes: int = 2, name: str = "train-llm", comment: str = CHECKPOINTED
) -> str:
    """A batch job over ``nodes`` whole GPU nodes that Slurm may requeue; its id."""
    out = cluster.run(
        "sbatch", f"-N{nodes}", "--gres=gpu:8", "--requeue", "-J", name, "--comment", comment,
        "-o", "/dev/null", "--wrap", "sleep 600",
    )  # fmt: skip
    match = re.search(r"Submitted batch job (\d+)", out)
    assert match, out
    return match.group(1)


def report_gpu(
    cluster: SlurmCluster, node: str, health: dict[str, str], xid: dict[str, int] | None = None
) -> None:
    """What the node agent does: NVML's view of the node's GPUs into the node's Extra."""
    extra = {"gpu_health": health, "last_xid": xid or {}, "rack": "r01", "leaf_switch": "leaf-01"}
    cluster.run("scontrol", "update", f"nodename={node}", f"extra={json.dumps(extra)}")
