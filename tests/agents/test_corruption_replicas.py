"""Suspected silent data corruption with three agent replicas (one real nats-server): the same
numerics event handed to all of them is one incident, the job is stopped once, each node is
diagnosed once, and after the diagnostics' 15 simulated minutes one replica isolates the failing GPU
and restarts the job once, from a checkpoint at or before the last good step."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aiops.platform import Platform
from aiops.settings import Settings
from events import subjects
from events.models import NumericsEvent
from tests.agents.replica_support import drain_all, executed, replicas
from tests.waiting import eventually


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    settings = Settings(http_port=0, embedded_agent=False, group_wait_s=0.1)
    async with Platform(settings, data_dir=tmp_path, serve_http=False, run_clock=False) as p:
        p.twin.advance(45 * 60)
        yield p


def numerics_event(platform: Platform, event_id: str, last_good: int) -> tuple[str, bytes]:
    job = platform.twin.job("train-02")
    event = NumericsEvent(
        event_id=event_id,
        time=platform.twin.now(),
        cluster=platform.twin.name,
        source="numerics-detector",
        job="train-02",
        signature="nonfinite",
        first_bad_step=last_good + 1,
        last_good_step=last_good,
        value=float("nan"),
        nodes=list(job.nodes),
        reason="loss NaN",
    )
    return subjects.event("numerics", platform.twin.name, "train-02"), event.model_dump_json().encode()


@pytest.mark.slow
async def test_three_replicas_locate_the_corrupting_gpu_once_and_roll_back_before_the_onset(
    platform: Platform,
) -> None:
    twin = platform.twin
    last_good = twin.job("train-02").step
    twin.inject_sdc("node-010", 3, "nan")
    first, again = numerics_event(platform, "n-1", last_good), numerics_event(platform, "n-2", last_good)
    async with replicas(platform, 3) as group:
        for replica in group:
            await replica.agent.handle_payloads([first, again])
        await drain_all([r.agent for r in group])
        twin.advance(900)  # DCGM level 3 takes about 15 minutes

        async def mitigated() -> bool:
            await drain_all([r.agent for r in group])
            incidents = await platform.store.list_incidents()
            return [i.status for i in incidents] == ["mitigated"]

        await eventually(mitigated, what="the incident mitigated")
        [incident] = await platform.store.list_incidents()
        stops = await executed(platform, "stop_job")
        diagnosed = await executed(platform, "run_diagnostics")
        isolated = await executed(platform, "isolate_gpu")
        restarts = await executed(platform, "restart_from_checkpoint")

    assert len(stops) == 1
    assert sorted(r.arguments["node"] for r in diagnosed) == ["node-009", "node-010", "node-011", "node-012"]
    assert {r.arguments["level"] for r in diagnosed} == {3}
    assert [(r.arguments["node"], r.arguments["gpu"]) for r in isolated] == [("node-010", 3)]
    assert [r.arguments["at_or_before_step"] for r in restarts] == [last_good]
    assert incident.root_cause is not None and incident.root_cause.entity_id == "node-010/gpu3"
    job = twin.job("train-02")
    assert "node-010" not in job.nodes and job.step <= last_good
