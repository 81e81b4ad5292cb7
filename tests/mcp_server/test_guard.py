"""The policy gate and the audit trail, seen through the mutating tools."""

from __future__ import annotations

from datetime import timedelta

import pytest
from mcp import Client

from fleet import FleetTwin
from mcp_server.deps import PolicyLimits
from mcp_server.gate.guard import DENIED
from mcp_server.gate.policy import Principal
from tests.mcp_server.support import (
    ADMIN,
    AGENT,
    OPERATOR,
    VIEWER,
    MakeStack,
    Stack,
    error,
    held,
    ok,
    refusal,
)

ISOLATE = {"node": "node-003", "gpu": 2, "reason": "Xid 79 fell off the bus"}
RESTART = {"job": "train-02", "reason": "NCCL watchdog timeout"}


def isolations(twin: FleetTwin) -> int:
    return len(twin.isolations_since(twin.spec.epoch))


# -- roles ---------------------------------------------------------------------------------------


async def test_a_viewer_may_not_isolate_a_gpu_and_the_denial_names_the_role(make_stack: MakeStack) -> None:
    stack = make_stack(VIEWER)
    async with held(Client(stack.server)) as client:
        result = await client.call_tool("isolate_gpu", ISOLATE)
    message, refused = error(result), refusal(result)
    assert (refused.kind, refused.approval_id) == ("denied", None)  # what a program reads
    assert refused.reasons == [
        "no policy permits role 'viewer' to call isolate_gpu: viewers read only, an operator acts"
    ]
    assert refused.rule == "viewers-read-only"
    assert DENIED in message  # the sentence a person reads
    assert "role viewer" in message
    assert "victor" in message
    assert "node-003/gpu2" in message
    assert "no policy permits role 'viewer' to call isolate_gpu" in message
    assert not stack.twin.node("node-003").gpus[2].isolated
    assert isolations(stack.twin) == 0


async def test_a_viewer_may_not_restart_a_job(make_stack: MakeStack) -> None:
    stack = make_stack(VIEWER)
    step = stack.twin.job("train-02").step
    async with held(Client(stack.server)) as client:
        message = error(await client.call_tool("restart_from_checkpoint", RESTART))
    assert DENIED in message and "role viewer" in message and "train-02" in message
    job = stack.twin.job("train-02")
    assert (job.state, job.step, job.restarts) == ("running", step, 0)


async def test_a_viewer_may_still_read(make_stack: MakeStack) -> None:
    stack = make_stack(VIEWER)
    async with held(Client(stack.server)) as client:
        assert ok(await client.call_tool("describe_node", {"node": "node-003"}))["name"] == "node-003"
        assert ok(await client.call_tool("checkpoint_status", {"job": "train-01"}))["has_checkpoint"]
    assert stack.audit.entries == []  # reads are not audited


@pytest.mark.parametrize("principal", [OPERATOR, AGENT, ADMIN], ids=lambda p: p.role)
async def test_operators_the_agent_and_admins_may_isolate_and_restart(
    make_stack: MakeStack, principal: Principal
) -> None:
    stack = make_stack(principal)
    async with held(Client(stack.server)) as client:
        isolated = ok(await client.call_tool("isolate_gpu", ISOLATE))
        restarted = ok(await client.call_tool("restart_from_checkpoint", RESTART))
    assert isolated["policy"]["decision"] == restarted["policy"]["decision"] == "allow"
    assert any(f"'{principal.role}'" in reason for reason in isolated["policy"]["reasons"])
    gpu = stack.twin.node("node-003").gpus[2]
    assert gpu.isolated
    assert gpu.isolation_reason is not None and f"(by {principal.id})" in gpu.isolation_reason
    assert stack.twin.job("train-02").restarts == 1


# -- blast radius --------------------------------------------------------------------------------


@pytest.mark.parametrize("principal", [OPERATOR, AGENT], ids=lambda p: p.role)
async def test_the_third_isolation_in_an_hour_is_denied_by_the_blast_radius_rule(
    make_stack: MakeStack, principal: Principal
) -> None:
    stack = make_stack(principal, limits=PolicyLimits(max_isolations_per_hour=2))
    async with held(Client(stack.server)) as client:
        for gpu in (0, 1):
            ok(await client.call_tool("isolate_gpu", {"node": "node-013", "gpu": gpu, "reason": "ECC storm"}))
        third = await client.call_tool("isolate_gpu", {"node": "node-013", "gpu": 2, "reason": "ECC storm"})
    message = error(third)
    assert DENIED in message
    assert (refusal(third).kind, refusal(third).rule) == ("denied", "blast-radius-max-isolations-per-hour")
    assert "blast radius rule max-isolations-per-hour" in message
    assert "2 GPU isolations in the last hour, limit 2 per hour" in message
    assert [g.isolated for g in stack.twin.node("node-013").gpus[:3]] == [True, True, False]
    denied = stack.audit.entries[-1]
    assert (denied.decision, denied.ok) == ("deny", False)
    assert denied.arguments["gpu"] == 2


async def test_a_dry_run_is_denied_by_the_blast_radius_rule_too(make_stack: MakeStack) -> None:
    stack = make_stack(OPERATOR, limits=PolicyLimits(max_isolations_per_hour=1))
    async with held(Client(stack.server)) as client:
        ok(await client.call_tool("isolate_gpu", {"node": "node-013", "gpu": 0, "reason": "ECC storm"}))
        message = error(
            await client.call_tool(
                "isolate_gpu", {"node": "node-013", "gpu": 1, "reason": "ECC storm", "dry_run": True}
            )
        )
    assert "blast radius rule max-isolations-per-hour" in message
    assert stack.audit.entries[-1].dry_run is True


async def test_the_blast_radius_window_moves_with_the_fleet_clock(make_stack: MakeStack) -> None:
    stack = make_stack(OPERATOR, limits=PolicyLimits(max_isolations_per_hour=1))
    async with held(Client(stack.server)) as client:
        ok(await client.call_tool("isolate_gpu", {"node": "node-014", "gpu": 0, "reason": "ECC storm"}))
        error(await client.call_tool("isolate_gpu", {"node": "node-014", "gpu": 1, "reason": "ECC storm"}))
        stack.twin.advance(timedelta(hours=1, seconds=1).total_seconds())
        ok(await client.call_tool("isolate_gpu", {"node": "node-014", "gpu": 1, "reason": "ECC storm"}))
    assert [g.isolated for g in stack.twin.node("node-014").gpus[:2]] == [True, True]


async def test_restarts_do_not_count_against_the_isolation_limit(make_stack: MakeStack) -> None:
    stack = make_stack(OPERATOR, limits=PolicyLimits(max_isolations_per_hour=0))
    async with held(Client(stack.server)) as client:
        ok(await client.call_tool("restart_from_checkpoint", RESTART))
        message = error(await client.call_tool("isolate_gpu", ISOLATE))
    assert "limit 0 per hour" in message


# -- dry run -------------------------------------------------------------------------------------


async def test_a_dry_run_isolation_reports_the_policy_and_changes_nothing(
    stack: Stack, client: Client
) -> None:
    outcome = ok(await client.call_tool("isolate_gpu", {**ISOLATE, "dry_run": True}))
    assert outcome["dry_run"] is True
    assert outcome["changed"] is False
    assert outcome["policy"]["decision"] == "allow"
    assert "dry run" in outcome["detail"] and "nothing was changed" in outcome["detail"]
    assert not stack.twin.node("node-003").gpus[2].isolated
    assert isolations(stack.twin) == 0


async def test_a_dry_run_restart_changes_nothing(stack: Stack, client: Client) -> None:
    step = stack.twin.job("train-02").step
    outcome = ok(await client.call_tool("restart_from_checkpoint", {**RESTART, "dry_run": True}))
    assert (outcome["dry_run"], outcome["changed"]) == (True, False)
    job = stack.twin.job("train-02")
    assert (job.state, job.step, job.restarts) == ("running", step, 0)


async def test_a_viewers_dry_run_is_denied_as_well(make_stack: MakeStack) -> None:
    stack = make_stack(VIEWER)
    async with held(Client(stack.server)) as client:
        message = error(await client.call_tool("isolate_gpu", {**ISOLATE, "dry_run": True}))
    assert DENIED in message and "role viewer" in message


# -- audit ---------------------------------------------------------------------------------------


async def test_the_audit_records_every_mutation_attempt_denied_ones_included(make_stack: MakeStack) -> None:
    stack = make_stack(VIEWER, limits=PolicyLimits(max_isolations_per_hour=1))
    async with held(Client(stack.server)) as client:
        error(await client.call_tool("isolate_gpu", ISOLATE))  # viewer: denied by role
        stack.identity.principal = OPERATOR
        ok(await client.call_tool("isolate_gpu", {**ISOLATE, "dry_run": True}))  # dry run
        ok(await client.call_tool("isolate_gpu", ISOLATE))  # allowed, acts
        error(await client.call_tool("isolate_gpu", {**ISOLATE, "gpu": 3}))  # blast radius
        stack.identity.principal = AGENT
        ok(await client.call_tool("restart_from_checkpoint", RESTART))
        ok(await client.call_tool("describe_node", {"node": "node-003"}))  # a read: not audited

    entries = stack.audit.entries
    assert [(e.principal, e.role, e.tool, e.decision, e.ok, e.dry_run) for e in entries] == [
        ("victor", "viewer", "isolate_gpu", "deny", False, False),
        ("olga", "operator", "isolate_gpu", "allow", True, True),
        ("olga", "operator", "isolate_gpu", "allow", True, False),
        ("olga", "operator", "isolate_gpu", "deny", False, False),
        ("triage-agent", "agent", "restart_from_checkpoint", "allow", True, False),
    ]
    assert all(e.cluster == "sim-a" for e in entries)
    assert entries[0].arguments == {
        "node": "node-003",
        "gpu": 2,
        "reason": "Xid 79 fell off the bus",
        "idempotency_key": None,
    }
    assert entries[0].reasons == [
        "no policy permits role 'viewer' to call isolate_gpu: viewers read only, an operator acts"
    ]
    assert entries[0].result == entries[0].reasons[0]
    assert entries[2].reasons == ["role 'operator' may call the operational tool isolate_gpu"]
    assert entries[2].result.startswith("isolated GPU 2 on node-003")
    assert entries[3].arguments["gpu"] == 3
    assert "blast radius rule max-isolations-per-hour" in entries[3].reasons[0]
    assert entries[4].arguments == {
        "job": "train-02",
        "reason": "NCCL watchdog timeout",
        "idempotency_key": None,
    }
    assert entries[4].result.startswith("train-02 restarting from step")


async def test_a_denied_call_with_an_idempotency_key_is_audited_with_the_key(make_stack: MakeStack) -> None:
    stack = make_stack(VIEWER)
    async with held(Client(stack.server)) as client:
        error(await client.call_tool("isolate_gpu", {**ISOLATE, "idempotency_key": "inc-1/isolate"}))
    assert [e.idempotency_key for e in stack.audit.entries] == ["inc-1/isolate"]


async def test_an_allowed_call_with_an_idempotency_key_is_audited_with_the_key(
    stack: Stack, client: Client
) -> None:
    ok(await client.call_tool("isolate_gpu", {**ISOLATE, "idempotency_key": "inc-1/isolate"}))
    assert [e.idempotency_key for e in stack.audit.entries] == ["inc-1/isolate"]
