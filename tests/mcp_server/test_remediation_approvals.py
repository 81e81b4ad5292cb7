"""Approvals through the MCP tools: a call the policy sends to a person waits as a record, a person
approves or rejects it, and the same call then goes ahead (once) or stays refused."""

from __future__ import annotations

from datetime import timedelta

from mcp_server.gate.guard import APPROVAL_REQUIRED, DENIED
from mcp_server.gate.policy import PolicyGate
from mcp_server.gate.safety import FreezeWindow
from tests.mcp_server.remediation_rig import OPERATOR_2, build_rig, connected
from tests.mcp_server.support import ADMIN, AGENT, OPERATOR, VIEWER

SWAP = {
    "job": "train-02",
    "node": "node-010",
    "reason": "Xid 79",
    "idempotency_key": "inc-7/swap-spare/swap",
    "incident_id": "inc-7",
}


async def test_a_swap_into_the_reserve_waits_for_a_person_and_then_goes_ahead_once(
    policy_gate: PolicyGate,
) -> None:
    async with connected(build_rig(policy_gate, min_spares=2)) as rig:
        asked, asks = await rig.refused("swap_spare", **SWAP)
        approval_id = asks.approval_id
        _, asks_again = await rig.refused("swap_spare", **SWAP)
        listed = await rig.ok("list_approvals")

        rig.as_(OPERATOR)
        approved = await rig.ok("approve_action", approval_id=approval_id, comment="spares arrive tomorrow")
        rig.as_(AGENT)
        swapped = await rig.ok("swap_spare", **SWAP)
        replayed = await rig.ok("swap_spare", **SWAP)
        after = await rig.ok("list_approvals", status=["used"])

    assert APPROVAL_REQUIRED in asked and f"approval {approval_id}" in asked  # the sentence, for people
    assert (asks.kind, asks.rule) == ("approval_required", "spare-reserve-needs-approval")  # the fields
    assert approval_id is not None and asks_again.approval_id == approval_id  # one request, not two
    assert asks.expires_at is not None and asks.expires_at == asks_again.expires_at
    assert "2 fit spare(s) left and the reserve is 2" in asked
    [request] = listed["approvals"]
    assert listed["pending"] == 1
    assert (request["id"], request["action"], request["target"]) == (
        approval_id,
        "swap_spare",
        "train-02/node-010",
    )
    assert (request["requested_by"], request["incident_id"]) == ("triage-agent", "inc-7")
    assert request["idempotency_key"] == "inc-7/swap-spare/swap"
    assert request["evidence"]["spares_available"] == 2 and request["evidence"]["min_spares"] == 2
    assert request["policies"] == ["spare-reserve-needs-approval"]
    assert approved["changed"] and approved["policy"]["decision"] == "allow"
    assert swapped["changed"] and swapped["data"]["approval"] == approval_id
    assert swapped["data"]["approved_by"] == "olga"
    assert replayed["replayed"]
    assert [a["id"] for a in after["approvals"]] == [approval_id]
    assert len(rig.twin.job("train-02").replacements) == 1
    assert rig.audited() == [
        ("triage-agent", "swap_spare", "approval_required", False),
        ("triage-agent", "swap_spare", "approval_required", False),
        ("olga", "approve_action", "allow", True),
        ("triage-agent", "swap_spare", "allow", True),
        ("triage-agent", "swap_spare", "allow", True),
    ]
    assert rig.audit.entries[0].result.startswith(f"approval {approval_id} requested")
    assert rig.audit.entries[1].result.startswith(f"approval {approval_id} still waiting")


async def test_a_rejected_action_stays_refused(policy_gate: PolicyGate) -> None:
    async with connected(build_rig(policy_gate, min_spares=2)) as rig:
        approval_id = (await rig.refused("swap_spare", **SWAP))[1].approval_id
        rig.as_(OPERATOR)
        rejected = await rig.ok(
            "reject_action", approval_id=approval_id, comment="keep the spares for train-01"
        )
        late = await rig.error("approve_action", approval_id=approval_id)
        rig.as_(AGENT)
        message, refused = await rig.refused("swap_spare", **SWAP)

    assert (refused.kind, refused.approval_id) == ("denied", approval_id)
    assert rejected["data"]["status"] == "rejected"
    assert f"approval {approval_id} is rejected (by olga); it cannot be decided again" in late
    assert DENIED in message
    assert f"approval {approval_id} was rejected by olga: keep the spares for train-01" in message
    assert rig.twin.job("train-02").replacements == []


async def test_nobody_approves_their_own_request_and_the_agent_approves_nothing(
    policy_gate: PolicyGate,
) -> None:
    async with connected(build_rig(policy_gate, OPERATOR, min_spares=2)) as rig:
        approval_id = (await rig.refused("swap_spare", **SWAP))[1].approval_id
        own = await rig.error("approve_action", approval_id=approval_id)
        rig.as_(AGENT)
        agent = await rig.error("approve_action", approval_id=approval_id)
        rig.as_(VIEWER)
        viewer = await rig.error("approve_action", approval_id=approval_id)
        rig.as_(OPERATOR_2)
        await rig.ok("approve_action", approval_id=approval_id)
        rig.as_(OPERATOR)
        swapped = await rig.ok("swap_spare", **SWAP)

    assert "olga asked for this action and may not approve it" in own
    assert "approve_action is reserved to people" in agent
    assert "no policy permits role 'viewer' to call approve_action" in viewer
    assert swapped["data"]["approved_by"] == "omar"


async def test_an_approval_binds_to_the_exact_call(policy_gate: PolicyGate) -> None:
    async with connected(build_rig(policy_gate, min_spares=2)) as rig:
        approval_id = (await rig.refused("swap_spare", **SWAP))[1].approval_id
        rig.as_(OPERATOR)
        await rig.ok("approve_action", approval_id=approval_id)
        rig.as_(AGENT)
        other_node, other = await rig.refused(
            "swap_spare", **{**SWAP, "node": "node-011", "idempotency_key": "x/1"}
        )

    assert APPROVAL_REQUIRED in other_node
    assert other.kind == "approval_required" and other.approval_id not in (None, approval_id)
    assert rig.twin.job("train-02").replacements == []


async def test_an_expired_approval_cannot_be_approved_and_the_call_asks_again(
    policy_gate: PolicyGate,
) -> None:
    async with connected(build_rig(policy_gate, min_spares=2, approval_ttl_s=0.0)) as rig:
        first = (await rig.refused("swap_spare", **SWAP))[1].approval_id
        listed = await rig.ok("list_approvals", status=["expired"])
        rig.as_(OPERATOR)
        late = await rig.error("approve_action", approval_id=first)
        rig.as_(AGENT)
        second = (await rig.refused("swap_spare", **SWAP))[1].approval_id

    assert [a["id"] for a in listed["approvals"]] == [first]
    assert f"approval {first} is expired" in late
    assert second is not None and second != first


async def test_a_restart_that_would_discard_many_gpu_hours_needs_approval(policy_gate: PolicyGate) -> None:
    async with connected(build_rig(policy_gate, max_gpu_hours_at_risk=5)) as rig:
        message = await rig.error("restart_from_checkpoint", job="train-01", reason="Xid 79")
        rig.as_(ADMIN)
        also_admin = await rig.error("restart_from_checkpoint", job="train-01", reason="Xid 79")

    assert APPROVAL_REQUIRED in message
    assert "restarting job 'train-01' now discards about 16 GPU-hours" in message
    assert "more than the 5 GPU-hours" in message
    assert APPROVAL_REQUIRED in also_admin  # the cost rule holds whoever asks
    assert rig.twin.job("train-01").restarts == 0


async def test_during_a_change_freeze_the_agent_asks_and_people_act(policy_gate: PolicyGate) -> None:
    rig = build_rig(policy_gate)
    now = rig.twin.now()
    freeze = FreezeWindow(now - timedelta(hours=1), now + timedelta(hours=1), "quarter-end training run")
    rig = build_rig(policy_gate, twin=rig.twin, freeze_windows=(freeze,))
    async with connected(rig):
        agent = await rig.error("drain_node", node="node-013", reason="check")
        status = await rig.ok("safety_status")
        rig.as_(OPERATOR)
        person = await rig.ok("drain_node", node="node-013", reason="check")

    assert "a change freeze is on, so drain_node on Node 'node-013' by the agent waits for a person" in agent
    assert (status["change_freeze"], status["freeze_reason"]) == (True, "quarter-end training run")
    assert person["changed"]


async def test_with_the_approval_switch_every_agent_action_waits(policy_gate: PolicyGate) -> None:
    async with connected(build_rig(policy_gate, agent_requires_approval=True)) as rig:
        message = await rig.error("cordon_node", node="node-013", reason="check")
        status = await rig.ok("safety_status")

    assert "agent_requires_approval is set" in message
    assert status["agent_requires_approval"] is True and status["pending_approvals"] == 1


async def test_a_restart_that_takes_a_reserve_spare_waits_for_a_person(policy_gate: PolicyGate) -> None:
    """The reserve rule covers every action that consumes a spare: a restart whose gang has an
    unfit member is placed by the scheduler on a warm spare, exactly as a swap would."""
    restart = {"job": "train-02", "reason": "Xid 79", "idempotency_key": "inc-8/restart"}
    async with connected(build_rig(policy_gate, min_spares=2)) as rig:
        healthy = await rig.ok("restart_from_checkpoint", job="train-01", reason="hang")
        node = rig.twin.job("train-02").nodes[0]
        rig.twin.isolate_gpu(node, 0, "Xid 79")
        asked = await rig.error("restart_from_checkpoint", **restart)
        listed = await rig.ok("list_approvals")

    assert healthy["changed"]  # its gang is fit: the restart takes no spare, the reserve is not asked
    assert APPROVAL_REQUIRED in asked and "the reserve is 2" in asked
    [request] = listed["approvals"]
    assert (request["action"], request["policies"]) == (
        "restart_from_checkpoint",
        ["spare-reserve-needs-approval"],
    )
