"""The bundled runbooks end to end: the engine, a real MCP client, the server with its policy gate,
and the fleet twin, whose clock a background task moves so resets, reboots and restarts finish."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from mcp import Client

from contracts.client import McpToolClient
from fleet import FleetTwin
from mcp_server.gate.policy import PolicyGate, Principal
from runbooks.engine import RunbookEngine
from runbooks.library import RunbookLibrary
from runbooks.state import MemoryRunStore, RunState
from tests.mcp_server.remediation_rig import Rig, build_rig
from tests.mcp_server.support import OPERATOR, held

SIM_S_PER_TICK = 30.0


@dataclass
class Bench:
    rig: Rig
    engine: RunbookEngine
    twin: FleetTwin

    async def run(self, runbook: str, run_id: str, dry_run: bool = False, **params: object) -> RunState:
        return await self.engine.run(
            runbook, dict(params), run_id=run_id, dry_run=dry_run, context={"incident": {"id": run_id}}
        )

    async def run_with_fallbacks(self, runbook: str, run_id: str, **params: object) -> list[RunState]:
        states = [await self.run(runbook, run_id, **params)]
        while (fallback := self.engine.fallback_for(states[-1])) is not None:
            name, fallback_params = fallback
            states.append(await self.run(name, f"{states[-1].run_id}/fallback-{name}", **fallback_params))
        return states


async def tick(twin: FleetTwin, stop: asyncio.Event) -> None:
    """Simulated time passes while the engine polls (30 simulated seconds every 10 ms)."""
    while not stop.is_set():
        twin.advance(SIM_S_PER_TICK)
        await asyncio.sleep(0.01)


@asynccontextmanager
async def bench(
    gate: PolicyGate, principal: Principal | None = None, **limits: object
) -> AsyncIterator[Bench]:
    rig = build_rig(gate, **({"principal": principal} if principal else {}), **limits)  # type: ignore[arg-type]
    stop = asyncio.Event()
    clock = asyncio.create_task(tick(rig.twin, stop))
    try:
        async with held(Client(rig.server)) as client:
            rig.client = client
            library = quick_polls(RunbookLibrary.load())
            # Waits are held in line here (the clock ticks meanwhile); parking is the agent's business.
            engine = RunbookEngine(McpToolClient(client), MemoryRunStore(), library, inline_wait_s=3600)
            yield Bench(rig, engine, rig.twin)
    finally:
        stop.set()
        await clock


def quick_polls(library: RunbookLibrary) -> RunbookLibrary:
    """Poll every 20 ms instead of every second: the test's clock moves fast."""
    for name in library.names():
        book = library.get(name)
        for step in book.preconditions + book.steps + book.verify + book.rollback:
            if step.wait is not None:
                step.wait.every_s = 0.02
    return library


def mutations(state: RunState) -> list[tuple[str, str]]:
    return [(s.tool, s.status) for s in state.steps if s.mutating]


async def test_swap_spare_replaces_the_member_restarts_and_waits_for_the_baseline(
    policy_gate: PolicyGate,
) -> None:
    async with bench(policy_gate) as b:
        b.twin.inject_xid("node-010", 3, 79)
        state = await b.run("swap-spare", "inc-1/swap-spare", job="train-02", node="node-010")
        restarting = b.twin.job("train-02").state
        confirmed = await b.engine.confirm(state.run_id)

    assert state.status == "succeeded", state.error
    assert (state.confirm_status, restarting) == ("pending", "restarting")  # the run does not wait for it
    assert confirmed is not None and confirmed.confirm_status == "confirmed"
    assert mutations(state) == [("swap_spare", "done"), ("restart_from_checkpoint", "done")]
    assert [s.idempotency_key for s in state.steps if s.mutating] == [
        "inc-1/swap-spare/swap",
        "inc-1/swap-spare/restart",
    ]
    swap = state.step("swap")
    assert swap is not None and swap.arguments["incident_id"] == "inc-1/swap-spare"  # the tool takes one
    assert state.saved["swap"]["data"]["spare"] == "node-015"
    resumed = confirmed.step("resumed")
    assert resumed is not None and resumed.status == "done" and resumed.attempts >= 1
    job = b.twin.job("train-02")
    assert (job.state, job.nodes[1], len(job.replacements)) == ("running", "node-015", 1)


async def test_swap_spare_in_a_dry_run_checks_the_policy_and_changes_nothing(policy_gate: PolicyGate) -> None:
    async with bench(policy_gate) as b:
        before = b.twin.job("train-02").model_dump()
        state = await b.run("swap-spare", "inc-2/swap-spare", dry_run=True, job="train-02", node="node-010")
        after = b.twin.job("train-02").model_dump()

    assert state.status == "dry_run"
    assert [(s.tool, s.decision) for s in state.steps if s.mutating] == [
        ("swap_spare", "allow"),
        ("restart_from_checkpoint", "allow"),
    ]
    assert state.step("resumed") is None  # verification is skipped: nothing happened to verify
    assert (before["nodes"], before["restarts"]) == (after["nodes"], after["restarts"])


async def test_reset_gpu_clears_an_ecc_error(policy_gate: PolicyGate) -> None:
    async with bench(policy_gate) as b:
        b.twin.inject_xid("node-013", 2, 48)
        state = await b.run("reset-gpu", "inc-3/reset-gpu", node="node-013", gpu=2)

    assert state.status == "succeeded", state.error
    assert mutations(state) == [("drain_node", "done"), ("reset_gpu", "done")]
    assert b.twin.gpu("node-013", 2).health == "healthy"


async def test_a_reset_that_does_not_clear_a_gsp_error_falls_back_to_a_reboot(
    policy_gate: PolicyGate,
) -> None:
    async with bench(policy_gate) as b:
        b.twin.inject_xid("node-013", 4, 119)
        reset, reboot = await b.run_with_fallbacks("reset-gpu", "inc-4/reset-gpu", node="node-013", gpu=4)

    assert reset.status == "rolled_back"
    assert "GPU 4 on node-013 is not healthy after the reset" in (reset.error or "")
    assert (reboot.runbook, reboot.status) == ("drain-and-reboot-node", "succeeded")
    assert reboot.params["reason"].endswith("the GPU reset did not clear the fault")
    assert b.twin.gpu("node-013", 4).health == "healthy"


async def test_a_gpu_off_the_bus_is_not_reset_but_rebooted(policy_gate: PolicyGate) -> None:
    async with bench(policy_gate) as b:
        b.twin.inject_xid("node-014", 6, 79)
        reset, reboot = await b.run_with_fallbacks("reset-gpu", "inc-5/reset-gpu", node="node-014", gpu=6)

    assert reset.status == "failed"
    assert "cannot be reset; reboot the node" in (reset.error or "")
    assert reboot.status == "succeeded"
    assert b.twin.gpu("node-014", 6).health == "healthy"


async def test_a_reboot_that_does_not_bring_the_gpu_back_escalates_with_a_ticket_and_a_page(
    policy_gate: PolicyGate,
) -> None:
    async with bench(policy_gate) as b:
        b.twin.inject_xid("node-013", 3, 79)
        b.twin.maintenance.mark_defective("node-013", 3)
        reboot, escalate = await b.run_with_fallbacks(
            "drain-and-reboot-node", "inc-6/reboot", node="node-013"
        )

    assert reboot.status == "rolled_back"
    assert "GPU [3] on node-013 still unhealthy after the reboot" in (reboot.error or "")
    assert (escalate.runbook, escalate.status) == ("escalate", "succeeded")
    [ticket] = b.rig.desk.tickets.values()
    assert ticket.node == "node-013" and "hardware needs replacing" in ticket.summary
    [page] = b.rig.desk.pages.values()
    assert page.ticket == ticket.id and page.urgency == "high"


async def test_return_to_service_puts_back_a_repaired_node_and_the_spare_pool_grows(
    policy_gate: PolicyGate,
) -> None:
    async with bench(policy_gate) as b:
        b.twin.inject_xid("node-010", 3, 79)
        await b.run("isolate-gpu", "inc-7/isolate-gpu", node="node-010", gpu=3)
        await b.run("swap-spare", "inc-7/swap-spare", job="train-02", node="node-010")
        await b.run("drain-and-reboot-node", "inc-7/reboot", node="node-010")
        back = await b.run("return-to-service", "inc-7/return", node="node-010")

    assert back.status == "succeeded", back.error
    assert mutations(back) == [("restore_gpus", "done"), ("uncordon_node", "done")]
    node = b.twin.node("node-010")
    assert (node.cordoned, node.spare, node.gpus[3].isolated) == (False, True, False)


async def test_return_to_service_leaves_another_owners_cordon_alone(policy_gate: PolicyGate) -> None:
    async with bench(policy_gate) as b:
        b.twin.cordon_node("node-013", "hw-team")
        state = await b.run("return-to-service", "inc-8/return", node="node-013")

    assert state.status == "precondition_failed"
    assert "cordoned by 'hw-team', not by this platform: left to its owner" in (state.error or "")
    assert mutations(state) == []
    assert b.twin.node("node-013").cordon_owner == "hw-team"


async def test_a_swap_into_the_reserve_parks_until_a_person_approves_it(policy_gate: PolicyGate) -> None:
    async with bench(policy_gate, min_spares=2) as b:
        parked = await b.run("swap-spare", "inc-9/swap-spare", job="train-02", node="node-010")
        swapped_while_parked = len(b.twin.job("train-02").replacements)
        b.rig.as_(OPERATOR)
        await b.rig.ok("approve_action", approval_id=parked.approval_id, comment="go")
        b.rig.as_(Principal(id="triage-agent", role="agent", kind="agent"))
        done = await b.run("swap-spare", "inc-9/swap-spare", job="train-02", node="node-010")

    assert parked.status == "awaiting_approval"
    assert parked.approval_id is not None and parked.approval_id.startswith("apr-")
    step = parked.step("swap")
    assert step is not None and (step.status, step.decision) == ("awaiting_approval", "approval_required")
    assert swapped_while_parked == 0
    assert done.status == "succeeded", done.error
    assert len(b.twin.job("train-02").replacements) == 1


async def test_a_rejected_approval_abandons_the_parked_run(policy_gate: PolicyGate) -> None:
    async with bench(policy_gate, min_spares=2) as b:
        parked = await b.run("swap-spare", "inc-10/swap-spare", job="train-02", node="node-010")
        abandoned = await b.engine.abandon(parked.run_id, "approval rejected by olga: not now")
        again = await b.run("swap-spare", "inc-10/swap-spare", job="train-02", node="node-010")

    assert abandoned is not None and abandoned.status == "abandoned"
    assert again.status == "abandoned"  # a finished run stays finished
    step = again.step("swap")
    assert step is not None and (step.status, step.error) == ("failed", "approval rejected by olga: not now")
    assert b.twin.job("train-02").replacements == []


@pytest.mark.parametrize("runbook", RunbookLibrary.load().names())
async def test_every_bundled_runbook_uses_tools_the_server_offers(
    runbook: str, policy_gate: PolicyGate
) -> None:
    rig = build_rig(policy_gate)
    offered = {tool.name for tool in await rig.server.list_tools()}
    book = RunbookLibrary.load().get(runbook)
    used = {s.tool for s in book.preconditions + book.steps + book.verify + book.rollback}
    assert used <= offered, used - offered
