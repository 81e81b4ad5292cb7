"""The role x action matrix of the bundled policies."""

from __future__ import annotations

import pytest

from mcp_server.gate.policy import PolicyGate, Principal
from tests.mcp_server.gate.cases import (
    ADMIN,
    AGENT,
    ALL_ACTIONS,
    CALM,
    OPERATIONAL,
    OPERATOR,
    PEOPLE_ONLY,
    RESOURCE_OF,
    VIEWER,
)


def test_the_schema_knows_every_mutating_tool_of_the_platform(gate: PolicyGate) -> None:
    assert gate.actions == frozenset(ALL_ACTIONS)


@pytest.mark.parametrize("action", ALL_ACTIONS)
def test_a_viewer_may_call_no_mutating_tool_and_is_told_why(gate: PolicyGate, action: str) -> None:
    decision = gate.check(VIEWER, action, RESOURCE_OF[action], CALM)

    assert decision.decision == "deny"
    assert not decision.allowed
    assert decision.reasons == [
        f"no policy permits role 'viewer' to call {action}: viewers read only, an operator acts"
    ]
    assert decision.policies == ["viewers-read-only"]


@pytest.mark.parametrize("principal", [OPERATOR, AGENT], ids=["operator", "agent"])
@pytest.mark.parametrize("action", OPERATIONAL)
def test_operator_and_agent_may_call_the_operational_tools(
    gate: PolicyGate, principal: Principal, action: str
) -> None:
    decision = gate.check(principal, action, RESOURCE_OF[action], CALM)

    assert decision.allowed
    assert decision.decision == "allow"
    assert decision.policies == ["operational-actions-for-operators-and-agent"]
    assert decision.reasons == [f"role '{principal.role}' may call the operational tool {action}"]


@pytest.mark.parametrize(
    "principal",
    [
        AGENT,
        Principal(id="agent-as-person", role="agent", kind="person"),
        Principal(id="ci-bot", role="operator", kind="service"),
        Principal(id="automation", role="admin", kind="service"),
        Principal(id="admin-agent", role="admin", kind="agent"),
    ],
    ids=lambda p: f"{p.role}-{p.kind}",
)
@pytest.mark.parametrize("action", PEOPLE_ONLY)
def test_only_people_may_approve_reject_or_reset_the_breaker(
    gate: PolicyGate, principal: Principal, action: str
) -> None:
    decision = gate.check(principal, action, RESOURCE_OF[action], CALM)

    assert decision.decision == "deny"
    assert decision.policies == ["approvals-and-breaker-only-by-people"]
    assert decision.reasons[0].startswith(f"{action} is reserved to people: '{principal.id}'")


@pytest.mark.parametrize("principal", [OPERATOR, ADMIN], ids=["operator", "admin"])
@pytest.mark.parametrize("action", PEOPLE_ONLY)
def test_operator_and_admin_people_may_approve_reject_and_reset_the_breaker(
    gate: PolicyGate, principal: Principal, action: str
) -> None:
    assert gate.check(principal, action, RESOURCE_OF[action], CALM).allowed


@pytest.mark.parametrize("action", ALL_ACTIONS)
def test_an_admin_may_call_every_tool(gate: PolicyGate, action: str) -> None:
    decision = gate.check(ADMIN, action, RESOURCE_OF[action], CALM)

    assert decision.allowed
    assert "admin-may-do-everything" in decision.policies
    assert "role 'admin' may call every tool" in decision.reasons


def test_every_bundled_policy_has_an_id_and_a_reason(gate: PolicyGate) -> None:
    assert set(gate.policies) >= {
        "operational-actions-for-operators-and-agent",
        "approvals-and-breaker-for-operator-people",
        "admin-may-do-everything",
        "approvals-and-breaker-only-by-people",
        "blast-radius-max-isolations-per-hour",
        "blast-radius-unknown",
        "agent-actions-need-approval",
    }
    for pid, info in gate.policies.items():
        assert info.id == pid
        assert info.reason.strip()
