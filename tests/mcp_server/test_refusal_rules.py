"""Every refusal names the Cedar rule that decided it, read through the MCP client as a program
reads it (``Refusal.rule``) and in the sentence a person reads; a viewer is told the role rule,
never a breaker's, and a dry run never claims a closed breaker is open."""

from __future__ import annotations

from mcp_server.gate.policy import PolicyGate
from tests.mcp_server.remediation_rig import build_rig, connected
from tests.mcp_server.support import AGENT, OPERATOR, VIEWER


async def test_a_viewers_dry_run_cordon_is_denied_by_the_role_rule_while_the_breaker_is_closed(
    policy_gate: PolicyGate,
) -> None:
    async with connected(build_rig(policy_gate, VIEWER)) as rig:
        message, refusal = await rig.refused("cordon_node", node="node-013", reason="look", dry_run=True)

    assert (refusal.kind, refusal.rule) == ("denied", "viewers-read-only")
    assert "role 'viewer'" in message and "circuit breaker" not in message
    assert message.endswith("(rule viewers-read-only)")  # the sentence a person reads names it too


async def test_a_viewer_is_told_the_role_rule_even_where_the_call_would_trip_the_breaker(
    policy_gate: PolicyGate,
) -> None:
    async with connected(build_rig(policy_gate, VIEWER, breaker_threshold_pct=5)) as rig:
        message, refusal = await rig.refused("cordon_node", node="node-013", reason="look", dry_run=True)
        status = await rig.ok("safety_status")

    assert (refusal.kind, refusal.rule) == ("denied", "viewers-read-only")
    assert message.index("role 'viewer'") < message.index("would trip the circuit breaker")
    assert status["breaker"]["open"] is False


async def test_an_operators_dry_run_that_would_trip_the_breaker_names_that_rule_and_leaves_it_closed(
    policy_gate: PolicyGate,
) -> None:
    async with connected(build_rig(policy_gate, OPERATOR, breaker_threshold_pct=5)) as rig:
        message, refusal = await rig.refused("cordon_node", node="node-013", reason="look", dry_run=True)
        status = await rig.ok("safety_status")

    assert (refusal.kind, refusal.rule) == ("denied", "breaker-would-trip")
    assert "would trip the circuit breaker" in message and "circuit breaker open" not in message
    assert status["breaker"]["open"] is False and status["breaker"]["trips"] == 0


async def test_a_take_out_past_the_blast_radius_names_the_blast_radius_rule(policy_gate: PolicyGate) -> None:
    async with connected(build_rig(policy_gate, OPERATOR, max_isolations_per_hour=0)) as rig:
        message, refusal = await rig.refused("isolate_gpu", node="node-013", gpu=0, reason="Xid 48")

    assert (refusal.kind, refusal.rule) == ("denied", "blast-radius-max-isolations-per-hour")
    assert "blast radius rule max-isolations-per-hour" in message


async def test_an_open_breaker_names_its_rule_and_a_viewer_still_hears_the_role_rule(
    policy_gate: PolicyGate,
) -> None:
    async with connected(build_rig(policy_gate, OPERATOR, breaker_threshold_pct=5)) as rig:
        _, tripped = await rig.refused("cordon_node", node="node-013", reason="Xid 79")
        _, still_open = await rig.refused("drain_node", node="node-014", reason="Xid 79")
        rig.as_(VIEWER)
        _, by_viewer = await rig.refused("drain_node", node="node-014", reason="Xid 79")

    assert (tripped.kind, tripped.rule) == ("breaker_open", "breaker-open")
    assert (still_open.kind, still_open.rule) == ("breaker_open", "breaker-open")
    assert (by_viewer.kind, by_viewer.rule) == ("denied", "viewers-read-only")


async def test_an_action_waiting_for_a_person_names_the_approval_rule(policy_gate: PolicyGate) -> None:
    async with connected(build_rig(policy_gate, AGENT, agent_requires_approval=True)) as rig:
        message, refusal = await rig.refused("cordon_node", node="node-013", reason="Xid 79")

    assert (refusal.kind, refusal.rule) == ("approval_required", "agent-actions-need-approval")
    assert refusal.approval_id is not None and refusal.approval_id in message
