"""Blast radius: at most N GPU isolations per hour, N from the operators' config (the context)."""

from __future__ import annotations

import pytest

from mcp_server.gate.policy import PolicyGate, Principal
from tests.mcp_server.gate.cases import ADMIN, AGENT, CALM, GPU, NODE, OPERATOR

ISOLATORS = pytest.mark.parametrize("principal", [AGENT, OPERATOR, ADMIN], ids=["agent", "operator", "admin"])
LIMITS = pytest.mark.parametrize("limit", [1, 3, 10])


@ISOLATORS
@LIMITS
def test_an_isolation_is_allowed_one_below_the_limit(
    gate: PolicyGate, principal: Principal, limit: int
) -> None:
    context = {**CALM, "isolations_last_hour": limit - 1, "max_isolations_per_hour": limit}

    assert gate.check(principal, "isolate_gpu", GPU, context).allowed


@ISOLATORS
@LIMITS
@pytest.mark.parametrize("over", [0, 1, 7])
def test_an_isolation_at_or_over_the_limit_is_denied_naming_the_rule_and_the_numbers(
    gate: PolicyGate, principal: Principal, limit: int, over: int
) -> None:
    done = limit + over
    decision = gate.check(
        principal,
        "isolate_gpu",
        GPU,
        {**CALM, "isolations_last_hour": done, "max_isolations_per_hour": limit},
    )

    assert decision.decision == "deny"
    assert decision.policies == ["blast-radius-max-isolations-per-hour"]
    [reason] = decision.reasons
    assert "blast radius rule max-isolations-per-hour" in reason
    assert f"{done} GPU isolations in the last hour, limit {limit} per hour" in reason


def test_an_isolation_without_the_counters_is_denied_because_the_rule_cannot_be_checked(
    gate: PolicyGate,
) -> None:
    calm = {k: v for k, v in CALM.items() if k not in ("isolations_last_hour", "max_isolations_per_hour")}
    for context in ({}, {"isolations_last_hour": 0}, {"max_isolations_per_hour": 5}):
        decision = gate.check(AGENT, "isolate_gpu", GPU, {**calm, **context})

        assert decision.decision == "deny"
        assert decision.policies == ["blast-radius-unknown"]
        assert "cannot be checked" in decision.reasons[0]


def test_the_isolation_limit_does_not_stop_other_tools(gate: PolicyGate) -> None:
    exhausted = {**CALM, "isolations_last_hour": 9, "max_isolations_per_hour": 3}

    assert gate.check(AGENT, "cordon_node", NODE, exhausted).allowed
    assert gate.check(AGENT, "reset_gpu", GPU, exhausted).allowed
