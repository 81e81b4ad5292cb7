"""The remediation tools in process: spares, swap, drain, reset, reboot, back to service, tickets.

The small fleet after 45 simulated minutes: train-01 on node-001..008 (leaf-01), train-02 on
node-009..012 (leaf-02), node-013..014 idle, spares node-015..016 (leaf-02)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from fleet.maintenance import REBOOT_S, RESET_S
from mcp_server.gate.guard import DENIED
from mcp_server.gate.policy import PolicyGate
from tests.mcp_server.remediation_rig import Rig, build_rig, connected
from tests.mcp_server.support import AGENT, OPERATOR, VIEWER

WHY = "Xid 79 fell off the bus"


@pytest.fixture
async def rig(policy_gate: PolicyGate) -> AsyncIterator[Rig]:
    async with connected(build_rig(policy_gate)) as running:
        yield running


async def test_the_spare_pool_shows_the_reserve_and_the_spare_a_swap_would_take(rig: Rig) -> None:
    pool = await rig.ok("spare_pool", job="train-02", node="node-010")

    assert [s["name"] for s in pool["spares"]] == ["node-015", "node-016"]
    assert (pool["fit"], pool["minimum"], pool["above_minimum"]) == (2, 1, 1)
    assert pool["candidate"] == "node-015"
    assert pool["candidate_why"] == "same leaf switch as node-010 (leaf-02)"


async def test_a_swap_then_a_restart_resumes_the_job_at_its_baseline_step_time(rig: Rig) -> None:
    rig.twin.inject_xid("node-010", 3, 79)

    swapped = await rig.ok(
        "swap_spare", job="train-02", node="node-010", reason=WHY, idempotency_key="i/swap"
    )
    restarted = await rig.ok(
        "restart_from_checkpoint", job="train-02", reason=WHY, idempotency_key="i/restart"
    )
    during = await rig.ok("job_progress", job="train-02")
    rig.twin.advance(480)
    after = await rig.ok("job_progress", job="train-02")

    assert swapped["changed"] and swapped["data"]["spare"] == "node-015"
    assert swapped["policy"]["decision"] == "allow"
    assert restarted["changed"] and restarted["data"]["replaced"] is None  # the gang was already whole
    assert (during["state"], during["resumed"], during["resumes_at"] is not None) == (
        "restarting",
        False,
        True,
    )
    assert (after["state"], after["resumed"], after["slowdown"]) == ("running", True, 1.0)
    assert after["nodes"] == ["node-009", "node-015", "node-011", "node-012"]


async def test_a_swap_repeated_with_its_key_answers_from_the_record(rig: Rig) -> None:
    args = {"job": "train-02", "node": "node-010", "reason": WHY, "idempotency_key": "inc-9/swap"}

    first = await rig.ok("swap_spare", **args)
    again = await rig.ok("swap_spare", **args)

    assert again["replayed"] and again["data"] == first["data"]
    assert len(rig.twin.job("train-02").replacements) == 1


async def test_a_viewer_may_read_the_pool_but_not_swap(rig: Rig) -> None:
    rig.as_(VIEWER)
    await rig.ok("spare_pool")
    message = await rig.error("swap_spare", job="train-02", node="node-010", reason=WHY)

    assert DENIED in message and "no policy permits role 'viewer' to call swap_spare" in message
    assert rig.twin.job("train-02").nodes[1] == "node-010"


async def test_drain_reset_and_verify_clears_an_ecc_error(rig: Rig) -> None:
    rig.twin.inject_xid("node-013", 2, 48)

    refused = await rig.error("reset_gpu", node="node-003", gpu=2, reason="DBE")
    drained = await rig.ok("drain_node", node="node-013", reason="reset GPU 2")
    reset = await rig.ok("reset_gpu", node="node-013", gpu=2, reason="DBE")
    rig.twin.advance(RESET_S)
    node = await rig.ok("describe_node", node="node-013")

    assert "drain the node first" in refused
    assert drained["data"]["cordon_owner"] == "gpu-aiops/triage-agent"
    assert reset["changed"] and reset["data"]["takes_s"] == RESET_S
    assert node["gpus"][2]["health"] == "healthy"


async def test_a_gpu_off_the_bus_needs_a_reboot_and_the_tool_says_so(rig: Rig) -> None:
    rig.twin.inject_xid("node-014", 1, 79)
    await rig.ok("drain_node", node="node-014", reason="Xid 79")

    message = await rig.error("reset_gpu", node="node-014", gpu=1, reason="Xid 79")
    rebooted = await rig.ok("reboot_node", node="node-014", reason="Xid 79")
    status = await rig.ok("service_status", node="node-014")
    rig.twin.advance(REBOOT_S)
    back = await rig.ok("service_status", node="node-014")

    assert "cannot be reset; reboot the node" in message
    assert rebooted["changed"]
    assert (status["state"], status["can_return"]) == ("rebooting", False)
    assert "rebooting until" in (status["maintenance"] or "")
    assert (back["all_gpus_healthy"], back["cordoned_by_platform"], back["can_return"]) == (True, True, True)


async def test_returning_a_node_restores_its_gpus_and_lifts_only_the_platforms_cordon(rig: Rig) -> None:
    rig.twin.isolate_gpu("node-013", 4, "suspect (by triage-agent)")
    await rig.ok("drain_node", node="node-013", reason="check")

    rig.as_(OPERATOR)  # a person puts back what the agent took out
    restored = await rig.ok("restore_gpus", node="node-013", reason="repaired")
    uncordoned = await rig.ok("uncordon_node", node="node-013", reason="repaired")
    status = await rig.ok("service_status", node="node-013")

    assert restored["data"]["restored"] == "4"
    assert uncordoned["changed"] and "uncordoned node-013" in uncordoned["detail"]
    assert status["in_service"] is True


@pytest.mark.parametrize("principal", [AGENT, OPERATOR], ids=lambda p: p.role)
async def test_another_owners_cordon_is_never_lifted(rig: Rig, principal: object) -> None:
    rig.twin.cordon_node("node-013", "hw-team")
    rig.as_(principal)  # type: ignore[arg-type]

    status = await rig.ok("service_status", node="node-013")
    message = await rig.error("uncordon_node", node="node-013", reason="looks fine")

    assert status["can_return"] is False
    assert "cordoned by 'hw-team', not by this platform" in status["why_not"][0]
    assert DENIED in message
    assert "node-013 was cordoned by 'hw-team', not by this platform" in message
    assert rig.twin.node("node-013").cordon_owner == "hw-team"
    assert rig.audit.entries[-1].reasons == [
        "node-013 was cordoned by 'hw-team', not by this platform; gpu-aiops never lifts another owner's cordon"
    ]


async def test_a_repaired_swapped_out_node_goes_back_to_the_spare_pool(rig: Rig) -> None:
    rig.twin.inject_xid("node-010", 3, 79)
    await rig.ok("isolate_gpu", node="node-010", gpu=3, reason=WHY)
    await rig.ok("swap_spare", job="train-02", node="node-010", reason=WHY)
    await rig.ok("drain_node", node="node-010", reason=WHY)
    await rig.ok("reboot_node", node="node-010", reason=WHY)
    rig.twin.advance(REBOOT_S)

    await rig.ok("restore_gpus", node="node-010", reason="rebooted, healthy")
    back = await rig.ok("uncordon_node", node="node-010", reason="rebooted, healthy")
    pool = await rig.ok("spare_pool")

    assert back["data"]["spare_pool"] is True
    assert [s["name"] for s in pool["spares"] if s["fit"]] == ["node-010", "node-016"]


async def test_a_ticket_and_a_page_are_recorded_once(rig: Rig) -> None:
    args = {"node": "node-013", "gpu": 3, "summary": "GPU 3 keeps failing", "evidence": ["Xid 48 x5"]}

    first = await rig.ok("open_ticket", incident_id="inc-1", **args)
    again = await rig.ok("open_ticket", incident_id="inc-1", **args)
    page = await rig.ok(
        "page_oncall", summary="GPU 3 on node-013 needs replacing", ticket=first["data"]["ticket"]
    )

    assert first["changed"] and not again["changed"]
    assert list(rig.desk.tickets) == [first["data"]["ticket"]]
    [ticket] = rig.desk.tickets.values()
    assert (ticket.node, ticket.gpu, ticket.evidence, ticket.incident_id) == (
        "node-013",
        3,
        ["Xid 48 x5"],
        "inc-1",
    )
    assert ticket.opened_by == "triage-agent"
    [sent] = rig.desk.pages.values()
    assert page["changed"] and sent.ticket == ticket.id


async def test_every_remediation_call_is_audited_with_its_decision(rig: Rig) -> None:
    await rig.ok("drain_node", node="node-013", reason="check", dry_run=True)
    await rig.ok("drain_node", node="node-013", reason="check")
    rig.as_(VIEWER)
    await rig.error("reboot_node", node="node-013", reason="check")

    assert rig.audited() == [
        ("triage-agent", "drain_node", "allow", True),
        ("triage-agent", "drain_node", "allow", True),
        ("victor", "reboot_node", "deny", False),
    ]
    assert [e.dry_run for e in rig.audit.entries] == [True, False, False]
    assert rig.audit.entries[1].arguments == {"node": "node-013", "reason": "check", "idempotency_key": None}
