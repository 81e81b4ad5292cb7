"""Pre-emptive removal on the embedded platform (AIOPS_PREEMPTIVE_REMOVAL): the twin's retired pages
climb past DCGM's soft limit on a GPU of a training job, the DCGM detector reports it, triage judges
it a trend to watch, and the agent swaps the node out at the job's next checkpoint boundary."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aiops.demo import wait_for_incidents
from aiops.platform import Platform
from aiops.settings import Settings
from fleet.failure_model import PRECURSOR_RETIRED_PAGES
from tests.waiting import eventually

pytestmark = pytest.mark.slow


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    settings = Settings(http_port=0, min_spares=1, preemptive_removal=True, preemptive_drain_after_s=600)
    async with Platform(settings, data_dir=tmp_path, serve_http=False, run_clock=False) as p:
        p.twin.advance(45 * 60)
        yield p


async def test_a_gpu_whose_retired_pages_climb_leaves_its_job_at_a_checkpoint_boundary(platform):
    twin = platform.twin
    twin.inject_ecc("node-003", 3, "retired_pages", PRECURSOR_RETIRED_PAGES)
    [incident] = await wait_for_incidents(platform, 1, timeout_s=30)
    assert "ecc.retired_pages_soft" in incident.findings and incident.actions == []

    async def planned() -> bool:
        stored = await platform.store.get_incident(incident.id)
        return stored is not None and any(e.what == "pre-emptive removal planned" for e in stored.timeline)

    await eventually(planned, within_s=30, what="the node flagged")
    job = twin.job("train-01")
    assert "node-003" in job.nodes  # the job trains on: no stop yet, the wait not over
    # The clock moves past the wait and on to the moment a checkpoint has just been written (and
    # the ranks have trained on for half a minute after it).
    flagged_at = twin.now()
    while (twin.now() - flagged_at).total_seconds() < 600 or not 30 <= (
        job.checkpoint_age_s(twin.now()) or 1e9
    ) <= 60:
        twin.advance(10)
    await eventually(lambda: "node-003" not in job.nodes, within_s=30, what="node-003 swapped out")
    assert "pre-emptive removal" in job.replacements[-1].reason

    async def done() -> bool:
        stored = await platform.store.get_incident(incident.id)
        return stored is not None and any(e.what == "pre-emptive removal done" for e in stored.timeline)

    await eventually(done, within_s=30, what="the removal noted on the incident")
