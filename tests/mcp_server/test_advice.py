"""Goodput advice over the real MCP client: spare_advice, checkpoint_advice, describe_job's advice
field and the advice://spares resource, from an incident history laid out on the twin's clock."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from mcp import Client
from mcp.types import TextResourceContents

from events.checkpoint_times import CheckpointTimes, CheckpointWrite, key_of
from events.incident import Incident, RootCause
from skills.goodput_math import daly_interval_s, poisson_tail
from tests.mcp_server.support import MemoryIncidents, Stack, error, held
from tests.mcp_server.test_tools import call

NODES = 16  # FleetSpec.small: 14 training nodes and 2 spares


def hardware_incident(n: int, now: datetime, days_ago: float, repaired_h: float | None) -> Incident:
    opened = now - timedelta(days=days_ago)
    incident = Incident(
        id=f"inc-{n}",
        cluster="sim-a",
        kind="xid",
        status="resolved" if repaired_h is not None else "mitigated",
        opened_at=opened,
        root_cause=RootCause(entity_type="gpu", entity_id=f"node-00{n % 9 + 1}/gpu0", confidence=0.9),
    )
    incident.note("opened", at=opened)
    incident.note("mitigated", at=opened + timedelta(seconds=30))
    if repaired_h is not None:
        incident.note("resolved", at=opened + timedelta(seconds=30, hours=repaired_h))
    return incident


def with_history(stack: Stack, incidents: list[Incident]) -> None:
    stack.deps.incidents = MemoryIncidents(incidents)


def now_of(stack: Stack) -> datetime:
    return stack.twin.now()


async def test_spare_advice_counts_the_history_and_sizes_the_pool(stack: Stack) -> None:
    now = now_of(stack)
    # 4 node-removing incidents in the last 30 days (two repaired in 2 h and 4 h), one older.
    history = [
        hardware_incident(i, now, d, r) for i, (d, r) in enumerate([(1, 2), (5, 4), (9, None), (20, None)])
    ]
    history.append(hardware_incident(9, now, 45, 1))
    with_history(stack, history)
    async with held(Client(stack.server)) as client:
        advice = await call(client, "spare_advice", target_p_dry=0.001)
    rate = 4 / (NODES * 30)
    assert advice["nodes"] == NODES
    assert advice["node_removals_per_1000_node_days"] == pytest.approx(rate * 1000, rel=1e-3)
    assert advice["mean_repair_h"] == pytest.approx(3.0)
    assert "2 repairs" in advice["repair_basis"]
    mean_in_repair = rate * NODES * 3 / 24
    spares = advice["advised_spares"]
    assert poisson_tail(mean_in_repair, spares) < 0.001 <= poisson_tail(mean_in_repair, spares - 1)
    assert advice["current_spares"] == 2
    assert advice["p_dry_current"] == pytest.approx(poisson_tail(mean_in_repair, 2))
    assert advice["policy_min_spares"] == stack.deps.limits.min_spares


async def test_spare_advice_prices_the_pool_for_a_job(stack: Stack) -> None:
    with_history(stack, [hardware_incident(1, now_of(stack), 2, 2)])
    async with held(Client(stack.server)) as client:
        advice = await call(client, "spare_advice", job="train-01", failures_per_1000_node_days=50)
    assert advice["removals_basis"].startswith("given")
    assert advice["ettr_with_advice"] > advice["ettr_without_spares"]


async def test_without_history_the_tools_ask_for_the_figures_instead_of_guessing(stack: Stack) -> None:
    with_history(stack, [])
    async with held(Client(stack.server)) as client:
        message = error(await client.call_tool("spare_advice", {}))
        assert "failures_per_1000_node_days" in message
        message = error(await client.call_tool("spare_advice", {"failures_per_1000_node_days": 4}))
        assert "repair_hours" in message
        given = await call(client, "spare_advice", failures_per_1000_node_days=4, repair_hours=2.2)
        assert given["advised_spares"] >= 1
        message = error(await client.call_tool("checkpoint_advice", {"job": "train-01"}))
        assert "failures_per_1000_node_days" in message
        detail = await call(client, "describe_job", job="train-01")
        assert detail["checkpoint_advice"] is None
        assert "failures_per_1000_node_days" in detail["checkpoint_advice_note"]


async def test_checkpoint_advice_is_dalys_optimum_for_the_jobs_failure_rate(stack: Stack) -> None:
    now = now_of(stack)
    with_history(stack, [hardware_incident(i, now, 1 + i, None) for i in range(6)])
    async with held(Client(stack.server)) as client:
        advice = await call(client, "checkpoint_advice", job="train-01", checkpoint_write_s=20)
        detail = await call(client, "describe_job", job="train-01")
    per_node_day = 6 / (NODES * 30)
    mtbf_s = 86_400 / (advice["gpus"] / 8 * per_node_day)
    assert advice["job_mtbf_h"] == pytest.approx(mtbf_s / 3600, rel=1e-3)
    assert advice["advised_interval_s"] == pytest.approx(daly_interval_s(20, mtbf_s), abs=0.1)
    assert advice["current_interval_s"] == 1800
    assert advice["ettr_gain"] == pytest.approx(advice["ettr_advised"] - advice["ettr_current"], abs=1e-4)
    assert advice["write_basis"] == "given"
    assert "30 s" in advice["downtime_basis"]  # measured: mitigated 30 s after opening
    # describe_job carries the same advice with the write time it assumes, and says so.
    assert detail["checkpoint_advice"]["advised_interval_s"] == pytest.approx(
        daly_interval_s(10, mtbf_s), abs=0.1
    )
    assert detail["checkpoint_advice"]["write_basis"].startswith("ASSUMED")


async def test_bad_arguments_are_readable_tool_errors(client: Client) -> None:
    assert "train-99" in error(await client.call_tool("checkpoint_advice", {"job": "train-99"}))
    assert error(await client.call_tool("spare_advice", {"target_p_dry": 2}))
    assert error(await client.call_tool("checkpoint_advice", {"job": "train-01", "checkpoint_write_s": -1}))


async def test_the_spares_resource_reads_the_advice_or_says_why_not(stack: Stack) -> None:
    now = now_of(stack)
    async with held(Client(stack.server)) as client:
        with_history(stack, [hardware_incident(1, now, 1, 2.0)])
        contents = (await client.read_resource("advice://spares")).contents
        assert isinstance(contents[0], TextResourceContents)
        assert '"advised_spares"' in contents[0].text
        with_history(stack, [])
        with pytest.raises(Exception, match="failures_per_1000_node_days"):
            await client.read_resource("advice://spares")


async def test_a_history_longer_than_the_tool_reads_is_an_error_not_a_silent_undercount(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mcp_server.incident_history.HISTORY_LIMIT", 2)
    now = now_of(stack)
    with_history(stack, [hardware_incident(i, now, 1 + i, 2) for i in range(3)])
    async with held(Client(stack.server)) as client:
        assert "shorter window_days" in error(await client.call_tool("spare_advice", {}))
        advice = await call(client, "spare_advice", window_days=1.5)  # the newest two cover it
        assert advice["node_removals_per_1000_node_days"] > 0


async def test_checkpoint_advice_uses_the_write_time_the_jobs_heartbeats_measured(stack: Stack) -> None:
    now = now_of(stack)
    with_history(stack, [hardware_incident(i, now, 1 + i, None) for i in range(6)])
    assert stack.deps is not None
    times = CheckpointTimes(cluster="sim-a", job="train-01")
    for step, write in [(100, 40.0), (200, 44.0), (300, 42.0)]:
        times.add(CheckpointWrite(step=step, write_s=write, at=now))
    await stack.deps.checkpoint_times.create(key_of("train-01"), times)
    async with held(Client(stack.server)) as client:
        advice = await call(client, "checkpoint_advice", job="train-01")
        detail = await call(client, "describe_job", job="train-01")
        given = await call(client, "checkpoint_advice", job="train-01", checkpoint_write_s=5)
        other = await call(client, "checkpoint_advice", job="train-02")
    assert advice["checkpoint_write_s"] == 42.0
    assert advice["write_basis"].startswith("measured: median of the job's last 3 checkpoint writes")
    mtbf_s = advice["job_mtbf_h"] * 3600
    assert advice["advised_interval_s"] == pytest.approx(daly_interval_s(42, mtbf_s), rel=1e-3)
    assert detail["checkpoint_advice"]["checkpoint_write_s"] == 42.0
    assert (given["checkpoint_write_s"], given["write_basis"]) == (5, "given")
    assert other["write_basis"].startswith("ASSUMED")  # train-02 reported no checkpoint yet
