"""Capture real Slurm answers for the parser tests: ``python -m tests.mcp_server.backends.slurm.capture``
starts the loopback cluster, sets up the scene below, and writes tests/fixtures/slurm/*.

The scene: a 2-node GPU job with the gpu-aiops checkpoint comment running on gpu-node-[001-002],
a 3-node job pending for resources, gpu-node-001 with the node agent's inventory in Extra (GPU 3
fallen off the bus), gpu-node-003 drained by a person, gpu-node-004 the spare partition's node and
also in a reservation.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from tests.mcp_server.backends.slurm.cluster import SlurmCluster

OUT = Path(__file__).resolve().parents[3] / "fixtures" / "slurm"
COMMENT = (
    "gpu-aiops: step=1200 step_time_s=1.25 baseline_step_s=1.2 checkpoint_step=1000 "
    "checkpoint_at=2026-12-07T04:00:00Z checkpoint_interval_s=600"
)
EXTRA = {
    "gpus": [
        {"index": i, "uuid": f"GPU-0000000{i}", "pci_bus_id": f"0000:{0x18 + i:02x}:00.0"} for i in range(8)
    ],
    "gpu_health": {"3": "fallen_off_bus"},
    "last_xid": {"3": 79},
    "rack": "r01",
    "leaf_switch": "leaf-01",
}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="slurm-capture-") as tmp:
        cluster = SlurmCluster(Path(tmp), spares=["gpu-node-004"])
        try:
            cluster.start()
            run = cluster.run
            run(
                "sbatch",
                "-N",
                "2",
                "--gres=gpu:8",
                "--requeue",
                "-J",
                "train-llm",
                "--comment",
                COMMENT,
                "-o",
                "/dev/null",
                "--wrap",
                "sleep 600",
            )
            cluster.wait_until(lambda: "RUNNING" in run("squeue", "-h", "-o", "%T"), "the job to run")
            run(
                "sbatch",
                "-N",
                "3",
                "--gres=gpu:8",
                "-J",
                "eval-wide",
                "-o",
                "/dev/null",
                "--wrap",
                "sleep 600",
            )
            run("scontrol", "update", "nodename=gpu-node-001", f"extra={json.dumps(EXTRA)}")
            run("scontrol", "update", "nodename=gpu-node-003", "state=drain", "reason=hw-team: DIMM swap")
            run("scontrol", "update", "nodename=gpu-node-003", "comment=asset 4711")
            run(
                "scontrol",
                "create",
                "reservation",
                "reservationname=spare-pool",
                "nodes=gpu-node-004",
                "starttime=now",
                "duration=infinite",
                "users=root",
                "flags=maint,ignore_jobs",
            )
            (OUT / "sinfo.json").write_text(run("sinfo", "--json"))
            (OUT / "squeue.json").write_text(run("squeue", "--json"))
            (OUT / "partitions.txt").write_text(run("scontrol", "show", "partition", "-o"))
            (OUT / "reservation.txt").write_text(run("scontrol", "show", "reservation", "spare-pool", "-o"))
        finally:
            cluster.stop()
    print(f"wrote {', '.join(sorted(p.name for p in OUT.iterdir()))} to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
