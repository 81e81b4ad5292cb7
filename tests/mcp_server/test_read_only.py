"""Read-only mode: mutating tools are hidden from the listing and refused by the gate."""

from __future__ import annotations

import dataclasses

from mcp import Client

from mcp_server.gate.policy import PolicyGate, Resource
from mcp_server.read_only import READ_ONLY_POLICY, ReadOnlyGate
from mcp_server.server import build_server
from tests.mcp_server.support import ADMIN, MUTATING_TOOLS, READ_TOOLS, MakeStack, error, held, ok, refusal


async def test_a_read_only_server_lists_no_tool_that_could_change_anything(make_stack: MakeStack) -> None:
    stack = make_stack(ADMIN, read_only=True)
    async with held(Client(stack.server)) as client:
        tools = (await client.list_tools()).tools
        assert {t.name for t in tools} >= READ_TOOLS
        assert not MUTATING_TOOLS & {t.name for t in tools}
        assert all(t.annotations is not None and t.annotations.read_only_hint for t in tools)
        assert "isolate_gpu" in error(
            await client.call_tool("isolate_gpu", {"node": "node-013", "gpu": 1, "reason": "ECC storm"})
        )  # hidden: the SDK answers "unknown tool", not the gate
        assert ok(await client.call_tool("fleet_health", {}))["status"] == "healthy"
    assert not stack.twin.node("node-013").gpus[1].isolated


async def test_the_gate_of_a_read_only_server_denies_even_an_admin(policy_gate: PolicyGate) -> None:
    gate = ReadOnlyGate(policy_gate)
    decision = gate.check(
        ADMIN, "isolate_gpu", Resource(type="Gpu", id="node-013/gpu1", attrs={"node": "node-013", "index": 1})
    )
    assert decision.decision == "deny" and decision.policies == [READ_ONLY_POLICY]
    assert "read-only mode" in decision.reasons[0] and "ada" in decision.reasons[0]
    assert gate.actions == policy_gate.actions


async def test_a_runbook_planned_on_a_read_only_server_shows_the_refusal(make_stack: MakeStack) -> None:
    stack = make_stack(ADMIN, read_only=True)
    async with held(Client(stack.server)) as client:
        plan = ok(
            await client.call_tool(
                "plan_runbook", {"runbook": "isolate-gpu", "params": {"node": "node-013", "gpu": 1}}
            )
        )
    assert plan["status"] == "denied"
    assert "read-only mode" in next(s for s in plan["steps"] if s["id"] == "isolate")["error"]


async def test_a_read_only_gate_answers_a_read_only_refusal(make_stack: MakeStack) -> None:
    """A front door that builds its own server over the same dependencies, tools not hidden."""
    stack = make_stack(ADMIN)
    assert stack.deps is not None
    deps = dataclasses.replace(stack.deps, gate=ReadOnlyGate(stack.deps.gate))
    async with held(Client(build_server(deps))) as client:
        result = await client.call_tool("isolate_gpu", {"node": "node-013", "gpu": 1, "reason": "ECC"})
    assert (refusal(result).kind, refusal(result).rule) == ("read_only", READ_ONLY_POLICY)
    assert "read-only mode" in error(result)


async def test_every_refused_mutation_is_audited_as_read_only_whichever_lock_refused_it(
    make_stack: MakeStack,
) -> None:
    stack = make_stack(ADMIN, read_only=True)
    args = {"node": "node-013", "gpu": 1, "reason": "ECC storm"}
    async with held(Client(stack.server)) as client:
        hidden = error(await client.call_tool("isolate_gpu", args))
        assert "read-only mode" in hidden and "Unknown tool" not in hidden
    # A front door that builds its own server over the same dependencies: the gate refuses.
    front_door = build_server(dataclasses.replace(stack.deps, gate=ReadOnlyGate(stack.deps.gate)))
    async with held(Client(front_door)) as client:
        assert "read-only mode" in error(await client.call_tool("isolate_gpu", args))
    records = [r for r in stack.audit.entries if r.tool == "isolate_gpu"]
    assert [(r.principal, r.decision, r.ok) for r in records] == [("ada", "deny", False)] * 2
    assert all(r.reasons[0].startswith("read_only:") and r.arguments["node"] == "node-013" for r in records)
    assert not stack.twin.node("node-013").gpus[1].isolated
