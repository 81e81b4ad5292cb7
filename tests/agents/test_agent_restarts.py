"""An agent replica that dies while its incident waits — for a person's approval, for the breaker,
for a confirmation — leaves nothing behind: a replica started afterwards takes the incident over
once the lease expires (``recover``), and the incident goes on from what the store says, acting
once. And the fallback chain (reset fails → drain and reboot → escalate) runs through the agent."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from aiops.platform import Platform
from aiops.settings import FreezeWindowSetting
from events.incident import Incident
from fleet import DEFAULT_EPOCH
from mcp_server.gate.policy import Principal
from tests.agents.replica_support import Replica, events_of, executed, replicas
from tests.agents.safety_support import running
from tests.waiting import eventually

pytestmark = pytest.mark.slow

OLGA = Principal(id="olga", role="operator", kind="person")
FREEZE = [
    FreezeWindowSetting(start=DEFAULT_EPOCH, end=DEFAULT_EPOCH + timedelta(days=30), reason="year-end run")
]


def started(tmp_path: Path, **settings: Any) -> AbstractAsyncContextManager[Platform]:
    """The platform without its embedded agent (the test's replicas are the agents), clock moving."""
    return running(tmp_path, embedded_agent=False, group_wait_s=0.1, **settings)


async def the_incident(platform: Platform, check: Callable[[Incident], bool], what: str) -> Incident:
    found: list[Incident] = []

    async def look() -> bool:
        found[:] = [i for i in await platform.store.list_incidents() if check(i)]
        return bool(found)

    try:
        await eventually(look, within_s=60, what=what)
    except AssertionError:
        for i in await platform.store.list_incidents():
            print(i.id, i.status, i.title, [(e.what, e.detail) for e in i.timeline])
        raise
    return found[0]


async def taken_over(survivor: Replica, incident_id: str) -> None:
    async def owns() -> bool:
        return await survivor.agent.ownership.owner(incident_id) == survivor.agent.ownership.replica

    await eventually(owns, within_s=30, what=f"{incident_id} taken over")


async def test_a_run_parked_for_approval_resumes_on_the_replica_that_took_it_over(tmp_path: Path) -> None:
    async with started(tmp_path, freeze_windows=FREEZE) as platform:
        platform.twin.inject_xid("node-003", 3, 79)
        events = await events_of(platform, 1)
        async with replicas(platform, 2) as (first, second):
            await first.agent.handle_payloads(events)
            parked = await the_incident(
                platform, lambda i: i.status == "awaiting_approval", "the isolation to wait for approval"
            )
            await first.die()
            second.watch()
            await taken_over(second, parked.id)
            [approval] = parked.pending_approvals
            async with platform.sessions.session(OLGA) as tools:
                answer = await tools.call("approve_action", {"approval_id": approval.id, "comment": "go"})
            assert answer.ok, answer.text
            await the_incident(
                platform,
                lambda i: i.id == parked.id and any(a.tool == "isolate_gpu" and a.ok for a in i.actions),
                "the approved isolation to run",
            )
            isolations = await executed(platform, "isolate_gpu")
    assert [(r.arguments["node"], r.arguments["gpu"]) for r in isolations] == [("node-003", 3)]


async def test_an_incident_held_by_the_breaker_is_retried_by_the_replica_that_took_it_over(
    tmp_path: Path,
) -> None:
    async with started(tmp_path, breaker_threshold_pct=10, min_spares=2) as platform:
        twin = platform.twin
        twin.inject_xid("node-013", 1, 79)
        twin.inject_xid("node-014", 2, 48)
        events = await events_of(platform, 2)
        async with replicas(platform, 2) as (first, second):
            # One after the other: the first isolation is allowed, the second trips the breaker.
            await first.agent.handle_payloads(events[:1])
            await first.agent.drain()
            await first.agent.handle_payloads(events[1:])
            held = await the_incident(platform, lambda i: i.held_by == "breaker", "the breaker to hold one")
            await first.die()
            second.watch()
            await taken_over(second, held.id)
            async with platform.sessions.session(OLGA) as tools:
                reset = await tools.call(
                    "reset_breaker", {"comment": "one bad batch of GPUs, replaced", "backlog": "retry"}
                )
            assert reset.ok, reset.text
            retried = await the_incident(
                platform,
                lambda i: i.id == held.id and i.held_by is None and i.status in ("mitigated", "escalated"),
                "the held incident to be retried",
            )
    assert retried.attempt == 2


async def test_a_confirmation_left_waiting_is_finished_by_the_replica_that_took_it_over(
    tmp_path: Path,
) -> None:
    async with started(tmp_path) as platform:
        platform.twin.inject_xid("node-003", 3, 79)
        events = await events_of(platform, 1)
        async with replicas(platform, 2) as (first, second):
            first.watch()
            await first.agent.handle_payloads(events)
            waiting = await the_incident(
                platform, lambda i: i.status == "mitigated" and bool(i.confirming), "a confirmation to wait"
            )
            await first.die()
            second.watch()
            await taken_over(second, waiting.id)
            confirmed = await the_incident(
                platform,
                lambda i: i.id == waiting.id and not i.confirming,
                "the confirmation to hold",
            )
            restarts = await executed(platform, "restart_from_checkpoint")
    assert any(e.what == "confirmed" for e in confirmed.timeline)
    assert len(restarts) == 1
