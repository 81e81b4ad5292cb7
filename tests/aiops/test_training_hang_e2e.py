"""Heartbeats from real training processes: two ranks of a plain training loop (subprocesses) beat
through ``TrainingHeartbeat`` into a platform running on the wall clock (the Kubernetes backend);
stopping one rank becomes a hang incident naming it, within the job's own threshold."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agents.safety_support import incident_where
from tests.aiops.test_kubernetes_platform import api, kube_platform  # noqa: F401  (fixture)
from tests.mcp_server.backends.kube_api import KubeApiDouble

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# The job's declared threshold. Long enough that a rank starved of CPU on a loaded 2-core CI machine
# (seen: load average 15 during the whole suite) is not itself a hang before the test stops one.
HANG_AFTER_S = 8.0


def start_rank(rank: int, nats_url: str, sync: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "AIOPS_NATS_URL": nats_url,
        "AIOPS_CLUSTER": "prod-a",
        "AIOPS_JOB": "tiny-lm",
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "NODE_NAME": f"gpu-node-0{rank + 1}",
        "AIOPS_HANG_AFTER_S": str(HANG_AFTER_S),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tests.events.training_rank", str(rank), "2", str(sync)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
    )


@pytest.fixture
def ranks() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


async def test_a_stopped_rank_becomes_a_hang_incident_on_the_wall_clock(
    api: KubeApiDouble,  # noqa: F811
    tmp_path: Path,
    ranks: list[subprocess.Popen[bytes]],
) -> None:
    sync = tmp_path / "sync"
    sync.mkdir()
    async with kube_platform(api, tmp_path) as platform:
        ranks += [start_rank(r, platform.nats_url, sync) for r in (0, 1)]
        for proc in ranks:
            assert proc.stdout is not None
            assert await asyncio.to_thread(proc.stdout.readline) == b"training\n"
        service = platform.detection.service
        await incident_where_beats(service, within_s=30)

        stopped_at = time.monotonic()
        ranks[1].send_signal(signal.SIGSTOP)  # rank 1 freezes; rank 0 waits in the collective
        hang = await incident_where(
            platform, lambda i: i.kind == "hang" and "tiny-lm" in i.affected_jobs, within_s=60, what="a hang"
        )
        elapsed = time.monotonic() - stopped_at
        for proc in ranks:  # before NATS goes away with the platform
            proc.kill()

    assert hang.affected_nodes == ["gpu-node-02"]  # the rank that stopped, not the one waiting
    print(f"\nstopped rank -> hang incident: {elapsed:.2f} s (job threshold {HANG_AFTER_S:g} s)")


async def incident_where_beats(service: object, *, within_s: float) -> None:
    from tests.waiting import eventually

    def both_ranks_progressing() -> bool:
        hang = service.hang  # type: ignore[attr-defined]
        return "tiny-lm" in hang.jobs and hang.threshold_s("tiny-lm") == HANG_AFTER_S

    await eventually(both_ranks_progressing, within_s=within_s, what="beats from both ranks")
