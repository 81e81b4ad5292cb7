"""The guard when its caller dies mid-call: the mutation and its record stay together."""

from __future__ import annotations

import asyncio

import pytest
from mcp.server.mcpserver.exceptions import ToolError

from contracts.tools import ActionChange
from mcp_server.gate.guard import MutationGuard
from mcp_server.gate.idempotency import MemoryIdempotency
from mcp_server.gate.policy import PolicyGate, Resource
from tests.mcp_server.remediation_rig import build_rig
from tests.waiting import eventually


async def test_a_caller_cancelled_mid_mutation_leaves_the_outcome_recorded_for_its_retry(
    policy_gate: PolicyGate,
) -> None:
    rig = build_rig(policy_gate)
    rig.deps.idempotency = MemoryIdempotency()
    guard = MutationGuard(rig.deps)
    started, release, acted = asyncio.Event(), asyncio.Event(), []

    async def perform() -> ActionChange:
        started.set()
        await release.wait()
        acted.append(1)
        return ActionChange(changed=True, detail="swapped node-015 in")

    async def call() -> object:
        return await guard.run(
            action="swap_spare",
            target="train-02/node-010",
            resource=Resource(type="Job", id="train-02", attrs={"gpus": 32}),
            arguments={"job": "train-02", "node": "node-010", "idempotency_key": "inc-1/swap"},
            idempotency_key="inc-1/swap",
            dry_run=False,
            perform=perform,
        )

    caller = asyncio.create_task(call())
    await started.wait()
    caller.cancel()  # the agent's connection dropped while the server acted
    with pytest.raises(asyncio.CancelledError):
        await caller
    with pytest.raises(ToolError, match="is still running"):
        await call()  # a retry while the first is in flight waits its turn
    release.set()
    await eventually(lambda: acted == [1], what="the orphaned mutation to finish")

    async def replayed() -> bool:
        try:
            outcome = await call()
        except ToolError:
            return False  # the record is not written yet
        return bool(getattr(outcome, "replayed", False))

    await eventually(replayed, what="the retry to be answered from the record")
    assert acted == [1]
