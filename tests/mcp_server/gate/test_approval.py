"""The approval_required decision: forbids annotated @approval("true")."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mcp_server.gate.policy import POLICY_DIR, PolicyGate
from tests.mcp_server.gate.cases import AGENT, CALM, GPU, NODE, OPERATOR, RESOURCE_OF

NEEDS_APPROVAL = (
    "isolate_gpu",
    "restart_from_checkpoint",
    "cordon_node",
    "uncordon_node",
    "drain_node",
    "reset_gpu",
    "reboot_node",
    "swap_spare",
    "run_runbook",
)
SWITCH_ON = {**CALM, "agent_requires_approval": True}


@pytest.mark.parametrize("action", NEEDS_APPROVAL)
def test_the_agents_actions_need_approval_when_the_switch_is_on(gate: PolicyGate, action: str) -> None:
    decision = gate.check(AGENT, action, RESOURCE_OF[action], SWITCH_ON)

    assert decision.decision == "approval_required"
    assert not decision.allowed
    assert decision.policies == ["agent-actions-need-approval"]
    resource = RESOURCE_OF[action]
    assert decision.reasons == [
        f"approval required: agent_requires_approval is set, so {action} on {resource.type} "
        f"'{resource.id}' by the agent waits for a person to approve it"
    ]


@pytest.mark.parametrize("switch", [{}, {"agent_requires_approval": False}], ids=["absent", "false"])
def test_the_approval_rule_is_off_by_default(gate: PolicyGate, switch: dict[str, bool]) -> None:
    assert gate.check(AGENT, "reboot_node", NODE, {**CALM, **switch}).decision == "allow"


def test_an_approved_action_is_allowed(gate: PolicyGate) -> None:
    decision = gate.check(AGENT, "reboot_node", NODE, {**SWITCH_ON, "approved": True})

    assert decision.decision == "allow"


def test_the_approval_switch_leaves_people_alone(gate: PolicyGate) -> None:
    assert gate.check(OPERATOR, "reboot_node", NODE, SWITCH_ON).decision == "allow"


def test_incident_bookkeeping_needs_no_approval(gate: PolicyGate) -> None:
    assert gate.check(AGENT, "acknowledge_incident", RESOURCE_OF["acknowledge_incident"], SWITCH_ON).allowed


def test_a_hard_forbid_beats_an_approval_rule(gate: PolicyGate) -> None:
    context = {**SWITCH_ON, "isolations_last_hour": 5, "max_isolations_per_hour": 5}

    decision = gate.check(AGENT, "isolate_gpu", GPU, context)

    assert decision.decision == "deny"
    assert decision.policies == ["blast-radius-max-isolations-per-hour"]


def test_an_approval_rule_without_a_permit_is_a_plain_deny(tmp_path: Path) -> None:
    shutil.copy(POLICY_DIR / "approvals.cedar", tmp_path)  # the approval rule, but no role permits
    gate = PolicyGate.from_directory(tmp_path)

    decision = gate.check(AGENT, "reboot_node", NODE, SWITCH_ON)

    assert decision.decision == "deny"
    assert decision.reasons == ["no policy permits role 'agent' to call reboot_node"]
