"""A fresh fleet twin starts with a closed breaker and no take-outs, even on the data directory of
an earlier `aiops up` whose twin tripped it: the breaker state is kept per twin (its run id), so
the earlier run's record stays in the bucket under its own key and counts against nothing. The
incidents the earlier twin left unfinished are closed, saying why, instead of passing for trouble
in the fresh fleet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from aiops.platform import Platform
from events import subjects
from tests.agents.safety_support import incident_where, running
from tests.mcp_server.support import held, ok

pytestmark = pytest.mark.slow


async def safety_status(platform: Platform) -> dict[str, Any]:
    async with held(Client(platform.agent_server)) as client:
        return ok(await client.call_tool("safety_status", {}))


async def test_a_fresh_twin_on_an_old_data_directory_starts_with_a_closed_breaker(tmp_path: Path) -> None:
    # 16 nodes, threshold 5%: the first node taken out trips the breaker.
    async with running(tmp_path, breaker_threshold_pct=5) as first:
        first.twin.inject_xid("node-003", 3, 79)
        stopped = await incident_where(
            first, lambda i: i.held_by == "breaker", what="the breaker to hold the isolation"
        )
        tripped = await safety_status(first)
        first_generation = first.breaker_generation

    async with running(tmp_path, breaker_threshold_pct=5) as second:
        fresh = await safety_status(second)
        kv = await second.js.key_value(subjects.BUCKET_BREAKER)
        kept = await kv.get(f"b.sim-a.{first_generation}")  # raises KeyNotFoundError when gone
        second_generation = second.breaker_generation
        earlier = await second.store.get_incident(stopped.id)

    assert tripped["breaker"]["open"] is True and tripped["breaker"]["trips"] == 1
    assert fresh["breaker"]["open"] is False and fresh["breaker"]["trips"] == 0
    assert fresh["breaker"]["taken_out"] == [] and fresh["breaker"]["trip_reason"] is None
    assert first_generation != second_generation
    assert earlier is not None and (earlier.status, earlier.resolved_by) == ("resolved", "aiops up")
    assert earlier.timeline[-1].what == "resolved" and "fresh twin" in (earlier.resolution or "")
    assert kept.value and b'"open":true' in kept.value.replace(b" ", b"")  # kept, not counted
