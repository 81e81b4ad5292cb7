"""One rank of a plain training loop (no PyTorch): a little arithmetic per step, then a "collective"
that waits for every rank to reach the step (through files in a shared directory), then a beat
through ``TrainingHeartbeat``. Stopping one rank (SIGSTOP) leaves the others blocked in the
collective, still alive: the hang the detector looks for.

    python -m tests.events.training_rank <rank> <world> <sync dir>   (AIOPS_* from the environment)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from events.heartbeat import TrainingHeartbeat


def collective(sync: Path, rank: int, world: int, step: int) -> None:
    (sync / f"rank{rank}.tmp").write_text(str(step))
    (sync / f"rank{rank}.tmp").replace(sync / f"rank{rank}")
    while True:
        reached = []
        for other in range(world):
            try:
                reached.append(int((sync / f"rank{other}").read_text() or 0))
            except (FileNotFoundError, ValueError):
                reached.append(0)
        if min(reached) >= step:
            return
        time.sleep(0.002)  # a spin-wait, as NCCL's progress loop does


def main() -> None:
    rank, world, sync = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    weights = [0.5] * 2000
    with TrainingHeartbeat.from_env(rank=rank, min_interval_s=0.25, keepalive_s=0.25) as hb:
        step = 0
        while True:
            started = time.perf_counter()
            step += 1
            weights = [w * 0.999 + 0.001 for w in weights]  # the "compute"
            collective(sync, rank, world, step)
            hb.beat(step, time.perf_counter() - started)
            if step == 1:
                print("training", flush=True)


if __name__ == "__main__":
    main()
