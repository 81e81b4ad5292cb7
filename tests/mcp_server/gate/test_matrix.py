"""The policy matrix: every role x every action x every kind of fleet context, against a spec.

``expected`` below is the policy written out in plain Python, independently of the Cedar files: who
may call what, which rules deny outright and which ask a person. A mismatch in any cell names the
principal, the action and the context.
"""

from __future__ import annotations

from typing import Any

import pytest

from events.incident import Decision
from mcp_server.gate.policy import PolicyGate, Principal, Resource
from tests.mcp_server.gate.cases import (
    ADMIN,
    AGENT,
    ALL_ACTIONS,
    CALM,
    NODE,
    OPERATIONAL,
    OPERATOR,
    PEOPLE_ONLY,
    RESOURCE_OF,
    VIEWER,
)

PRINCIPALS = {
    "viewer": VIEWER,
    "operator": OPERATOR,
    "admin": ADMIN,
    "agent": AGENT,
    "operator-service": Principal(id="ci-bot", role="operator", kind="service"),
    "admin-agent": Principal(id="admin-agent", role="admin", kind="agent"),
}

TAKE_OUT = {"isolate_gpu", "cordon_node", "drain_node", "reboot_node"}
CLUSTER_CHANGES = {
    "isolate_gpu",
    "restart_from_checkpoint",
    "cordon_node",
    "uncordon_node",
    "drain_node",
    "reset_gpu",
    "reboot_node",
    "swap_spare",
    "restore_gpus",
    "stop_job",
    "run_diagnostics",
    "run_runbook",
}

CONTEXTS: dict[str, dict[str, Any]] = {
    "calm": CALM,
    "isolations exhausted": {**CALM, "isolations_last_hour": 5, "max_isolations_per_hour": 5},
    "too much out of service": {**CALM, "out_of_service_pct": 30, "max_out_of_service_pct": 25},
    "breaker open": {**CALM, "breaker_open": True, "taken_out_pct": 25},
    "observe-only": {**CALM, "observe_only": True},
    "observe-only dry run": {**CALM, "observe_only": True, "dry_run": True},
    "change freeze": {**CALM, "change_freeze": True},
    "change freeze approved": {**CALM, "change_freeze": True, "approved": True},
    "agent approval switch": {**CALM, "agent_requires_approval": True},
    "costly restart": {**CALM, "gpu_hours_at_risk": 150},
    "costly restart approved": {**CALM, "gpu_hours_at_risk": 150, "approved": True},
    "spare reserve": {**CALM, "spares_available": 1, "min_spares": 1},
    "spare reserve, swapped already": {**CALM, "spares_available": 1, "min_spares": 1, "takes_spare": False},
    "own request": {**CALM, "own_request": True},
    "nothing known": {},
}


def expected(principal: Principal, action: str, ctx: dict[str, Any], resource: Resource) -> Decision:
    """The policy, in plain words turned into code."""
    role, kind = principal.role, principal.kind
    permitted = (
        role == "admin"
        or (action in OPERATIONAL and role in ("operator", "agent"))
        or (action in PEOPLE_ONLY and role == "operator" and kind == "person")
    )
    hard = (
        (action in PEOPLE_ONLY and (role == "agent" or kind != "person"))
        or (action == "approve_action" and ctx.get("own_request", False))
        or (
            action == "isolate_gpu"
            and not (
                "isolations_last_hour" in ctx
                and "max_isolations_per_hour" in ctx
                and ctx["isolations_last_hour"] < ctx["max_isolations_per_hour"]
            )
        )
        or (
            action in TAKE_OUT
            and not (
                "out_of_service_pct" in ctx
                and "max_out_of_service_pct" in ctx
                and ctx["out_of_service_pct"] <= ctx["max_out_of_service_pct"]
            )
        )
        or (action in TAKE_OUT and ctx.get("breaker_open", True))
        or (action in CLUSTER_CHANGES and ctx.get("observe_only", False) and not ctx.get("dry_run", False))
        or (
            action == "uncordon_node"
            and "cordon_owner" in resource.attrs
            and not str(resource.attrs["cordon_owner"]).startswith("gpu-aiops/")
        )
    )
    approved = ctx.get("approved", False)
    needs_person = not approved and (
        (action in CLUSTER_CHANGES and role == "agent" and ctx.get("agent_requires_approval", False))
        or (action in CLUSTER_CHANGES and role == "agent" and ctx.get("change_freeze", False))
        or (
            action in ("restart_from_checkpoint", "swap_spare")
            and ctx.get("gpu_hours_at_risk", 0) > ctx.get("max_gpu_hours_at_risk", 1 << 62)
        )
        or (
            action in ("swap_spare", "restart_from_checkpoint")
            and "spares_available" in ctx
            and "min_spares" in ctx
            and ctx["spares_available"] <= ctx["min_spares"]
            and ctx.get("takes_spare", True)
        )
    )
    if not permitted or hard:
        return "deny"
    return "approval_required" if needs_person else "allow"


CELLS = [pytest.param(p, a, c, id=f"{p}-{a}-{c}") for p in PRINCIPALS for a in ALL_ACTIONS for c in CONTEXTS]


def test_the_matrix_covers_every_action_the_schema_knows(gate: PolicyGate) -> None:
    assert gate.actions == frozenset(ALL_ACTIONS)
    assert len(CELLS) == len(PRINCIPALS) * len(ALL_ACTIONS) * len(CONTEXTS)


@pytest.mark.parametrize(("who", "action", "context"), CELLS)
def test_each_cell_of_the_policy_matrix_decides_as_the_spec_says(
    gate: PolicyGate, who: str, action: str, context: str
) -> None:
    principal, ctx, resource = PRINCIPALS[who], CONTEXTS[context], RESOURCE_OF[action]

    decision = gate.check(principal, action, resource, ctx)

    assert decision.decision == expected(principal, action, ctx, resource), decision.reasons
    assert decision.reasons, "every decision says why"


OWNERS = {
    "the platform's agent": "gpu-aiops/triage-agent",
    "the platform's operator": "gpu-aiops/olga",
    "a hardware team": "hw-team",
    "kubectl by hand": "kubernetes-admin",
    "a look-alike": "gpu-aiops-impostor/x",
}


@pytest.mark.parametrize("owner", OWNERS.values(), ids=list(OWNERS))
@pytest.mark.parametrize("who", ["operator", "admin", "agent"])
def test_only_cordons_this_platform_set_may_be_lifted_whoever_asks(
    gate: PolicyGate, owner: str, who: str
) -> None:
    node = Resource(type="Node", id="node-a1", attrs={**NODE.attrs, "cordoned": True, "cordon_owner": owner})

    decision = gate.check(PRINCIPALS[who], "uncordon_node", node, CALM)

    assert decision.decision == expected(PRINCIPALS[who], "uncordon_node", CALM, node)
    if not owner.startswith("gpu-aiops/"):
        assert decision.policies == ["uncordon-only-own-cordons"]
        assert decision.reasons == [
            f"node-a1 was cordoned by '{owner}', not by this platform; gpu-aiops never lifts another owner's cordon"
        ]


def test_an_open_breaker_names_the_share_and_the_threshold(gate: PolicyGate) -> None:
    decision = gate.check(OPERATOR, "drain_node", NODE, CONTEXTS["breaker open"])

    assert decision.policies == ["breaker-open"]
    assert (
        "after 25% of the cluster's nodes were taken out within its window (threshold 20%)"
        in decision.reasons[0]
    )
    assert "a person must reset it" in decision.reasons[0]


def test_the_breaker_does_not_stop_repairs_or_restarts(gate: PolicyGate) -> None:
    for action in ("reset_gpu", "restart_from_checkpoint", "swap_spare", "restore_gpus", "uncordon_node"):
        assert gate.check(AGENT, action, RESOURCE_OF[action], CONTEXTS["breaker open"]).allowed, action


def test_a_costly_restart_says_how_many_gpu_hours_it_would_discard(gate: PolicyGate) -> None:
    job = RESOURCE_OF["restart_from_checkpoint"]
    decision = gate.check(AGENT, "restart_from_checkpoint", job, CONTEXTS["costly restart"])

    assert decision.decision == "approval_required"
    assert decision.policies == ["costly-restart-needs-approval"]
    assert "discards about 150 GPU-hours" in decision.reasons[0]
    assert "more than the 100 GPU-hours" in decision.reasons[0]


def test_observe_only_names_the_switch_that_turns_actions_on(gate: PolicyGate) -> None:
    decision = gate.check(ADMIN, "reboot_node", NODE, CONTEXTS["observe-only"])

    assert decision.policies == ["observe-only"]
    assert "AIOPS_OBSERVE_ONLY=false" in decision.reasons[0]
