"""The fallback chain through the agent itself: a plan to reset a GPU that is off the bus and whose
hardware is gone — the reset is refused, the agent falls back to draining and rebooting the node,
the GPU does not come back, and the agent escalates with a ticket and a page. Every step is on the
incident (actions, timeline) and each mutation runs once."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.facts import Facts
from events.incident import Incident, Plan, RunbookInvocation
from tests.agents.replica_support import events_of, executed, replicas
from tests.agents.test_agent_restarts import started, the_incident

pytestmark = pytest.mark.slow


class ResetFirst:
    """A planner that chooses a reset for the GPU (as Claude may, where the rules isolate)."""

    name = "reset-first"

    async def plan(self, incident: Incident, facts: Facts) -> Plan:
        assert facts.gpu is not None
        return Plan(
            planner=self.name,
            disposition="mitigate",
            rationale=f"reset GPU {facts.gpu} on {facts.node}",
            actions=[RunbookInvocation(runbook="reset-gpu", params={"node": facts.node, "gpu": facts.gpu})],
        )


async def test_a_failed_reset_falls_back_to_a_reboot_and_a_failed_reboot_escalates_through_the_agent(
    tmp_path: Path,
) -> None:
    async with started(tmp_path, min_spares=0, max_out_of_service_pct=100) as platform:
        platform.twin.inject_xid("node-014", 6, 79)
        platform.twin.maintenance.mark_defective("node-014", 6)
        events = await events_of(platform, 1)
        async with replicas(platform, 1) as (agent,):
            agent.agent.mitigation.planner = ResetFirst()
            agent.watch()
            await agent.agent.handle_payloads(events)
            done = await the_incident(
                platform, lambda i: i.status == "escalated", "the chain to end with people"
            )
            reboots = await executed(platform, "reboot_node")
            tickets = await executed(platform, "open_ticket")
            pages = await executed(platform, "page_oncall")

    assert [e.detail.split(":")[0] for e in done.timeline if e.what == "fallback"] == [
        "runbook reset-gpu failed",
        "runbook drain-and-reboot-node rolled_back",
    ]
    runs = [a.run_id.rsplit("/", 1)[-1] for a in done.actions]
    assert "fallback-drain-and-reboot-node" in runs and "fallback-escalate" in runs
    assert [r.arguments["node"] for r in reboots] == ["node-014"]
    assert len(tickets) == 1 and len(pages) == 1
