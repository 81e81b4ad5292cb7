"""Idempotency keys through the mutating tools: an in-memory store and the KV store on a real
nats-server (a second call with the same key answers with the first result and acts not again)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from mcp import Client
from nats.js import JetStreamContext

from events import subjects
from events.leases import Leases, incident_lease
from events.models import stable_id
from mcp_server.gate.idempotency import (
    Claim,
    IdempotencyStore,
    KeyInFlight,
    KvIdempotency,
    MemoryIdempotency,
    fingerprint,
    scope_of,
)
from tests.mcp_server.support import AGENT, OPERATOR, VIEWER, MakeStack, error, held, ok, refusal, text_of

RESTART = {"job": "train-02", "reason": "NCCL watchdog timeout"}
ISOLATE = {"node": "node-003", "gpu": 2, "reason": "Xid 79 fell off the bus"}
# Longer than train-02's restart overhead (480 s): the job is running again, so a second restart
# without idempotency would act.
PAST_RESTART_S = 900

OpenStore = Callable[[], Awaitable[IdempotencyStore]]


@pytest.fixture(params=["memory", "kv"])
def open_store(request: pytest.FixtureRequest) -> OpenStore:
    """Opens a store: in memory, or ``KvIdempotency`` on the test's own nats-server (each opened
    KV store is a separate client of the same bucket, like a second server replica)."""
    if request.param == "memory":
        memory = MemoryIdempotency()

        async def open_memory() -> IdempotencyStore:
            return memory

        return open_memory
    js: JetStreamContext = request.getfixturevalue("js")

    async def open_kv() -> IdempotencyStore:
        return await KvIdempotency.open(js)

    return open_kv


async def test_a_restart_with_a_key_repeated_acts_once(make_stack: MakeStack, open_store: OpenStore) -> None:
    stack = make_stack(OPERATOR, idempotency=await open_store())
    arguments = {**RESTART, "idempotency_key": "inc-7/restart"}
    async with held(Client(stack.server)) as client:
        first = ok(await client.call_tool("restart_from_checkpoint", arguments))
        stack.twin.advance(PAST_RESTART_S)
        assert stack.twin.job("train-02").state == "running"
        second = ok(await client.call_tool("restart_from_checkpoint", arguments))

    assert stack.twin.job("train-02").restarts == 1
    assert (first["replayed"], second["replayed"]) == (False, True)
    assert first["idempotency_key"] == second["idempotency_key"] == "inc-7/restart"
    assert second["changed"] is True  # the first answer, not "already restarting"
    assert {k: v for k, v in second.items() if k != "replayed"} == {
        k: v for k, v in first.items() if k != "replayed"
    }
    assert [e.replayed for e in stack.audit.entries] == [False, True]


async def test_a_restart_without_a_key_repeated_acts_twice(make_stack: MakeStack) -> None:
    stack = make_stack(OPERATOR)
    async with held(Client(stack.server)) as client:
        ok(await client.call_tool("restart_from_checkpoint", RESTART))
        stack.twin.advance(PAST_RESTART_S)
        again = ok(await client.call_tool("restart_from_checkpoint", RESTART))
    assert again["changed"] is True and again["replayed"] is False
    assert stack.twin.job("train-02").restarts == 2


async def test_different_keys_act_separately(make_stack: MakeStack, open_store: OpenStore) -> None:
    stack = make_stack(OPERATOR, idempotency=await open_store())
    async with held(Client(stack.server)) as client:
        ok(await client.call_tool("restart_from_checkpoint", {**RESTART, "idempotency_key": "inc-7/restart"}))
        stack.twin.advance(PAST_RESTART_S)
        second = ok(
            await client.call_tool("restart_from_checkpoint", {**RESTART, "idempotency_key": "inc-8/restart"})
        )
    assert second["replayed"] is False
    assert stack.twin.job("train-02").restarts == 2


async def test_an_isolation_with_a_key_repeated_acts_once(
    make_stack: MakeStack, open_store: OpenStore
) -> None:
    stack = make_stack(OPERATOR, idempotency=await open_store())
    arguments = {**ISOLATE, "idempotency_key": "inc-7/isolate"}
    async with held(Client(stack.server)) as client:
        first = ok(await client.call_tool("isolate_gpu", arguments))
        second = ok(await client.call_tool("isolate_gpu", arguments))
    assert (first["changed"], first["replayed"]) == (True, False)
    assert (second["changed"], second["replayed"]) == (True, True)
    assert second["detail"] == first["detail"]
    assert len(stack.twin.isolations_since(stack.twin.spec.epoch)) == 1


async def test_the_same_key_on_another_tool_is_another_key(
    make_stack: MakeStack, open_store: OpenStore
) -> None:
    stack = make_stack(OPERATOR, idempotency=await open_store())
    async with held(Client(stack.server)) as client:
        ok(await client.call_tool("isolate_gpu", {**ISOLATE, "idempotency_key": "inc-7"}))
        restarted = ok(
            await client.call_tool("restart_from_checkpoint", {**RESTART, "idempotency_key": "inc-7"})
        )
    assert restarted["replayed"] is False
    assert stack.twin.job("train-02").restarts == 1


async def test_a_denied_call_gives_its_key_back(make_stack: MakeStack, open_store: OpenStore) -> None:
    stack = make_stack(VIEWER, idempotency=await open_store())
    arguments = {**RESTART, "idempotency_key": "inc-7/restart"}
    async with held(Client(stack.server)) as client:
        assert "policy denied" in error(await client.call_tool("restart_from_checkpoint", arguments))
        stack.identity.principal = OPERATOR
        retried = ok(await client.call_tool("restart_from_checkpoint", arguments))
    assert (retried["changed"], retried["replayed"]) == (True, False)
    assert stack.twin.job("train-02").restarts == 1


async def test_a_failed_call_gives_its_key_back(
    make_stack: MakeStack, open_store: OpenStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = make_stack(OPERATOR, idempotency=await open_store())
    arguments = {**ISOLATE, "idempotency_key": "inc-7/isolate"}
    original = stack.twin.isolate_gpu

    def failing(node: str, gpu: int, reason: str) -> Any:
        return original(node, 99, reason)  # the twin raises: no GPU 99

    async with held(Client(stack.server)) as client:
        # The backend fails after the guard claimed the key and the policy allowed the call.
        monkeypatch.setattr(stack.twin, "isolate_gpu", failing)
        assert "no GPU 99" in error(await client.call_tool("isolate_gpu", arguments))
        monkeypatch.undo()
        retried = ok(await client.call_tool("isolate_gpu", arguments))
    assert (retried["changed"], retried["replayed"]) == (True, False)
    failed = stack.audit.entries[0]
    assert (failed.decision, failed.ok) == ("allow", False)
    assert "no GPU 99" in failed.result


async def test_a_dry_run_does_not_use_up_the_key(make_stack: MakeStack, open_store: OpenStore) -> None:
    stack = make_stack(OPERATOR, idempotency=await open_store())
    arguments = {**RESTART, "idempotency_key": "inc-7/restart"}
    async with held(Client(stack.server)) as client:
        dry = ok(await client.call_tool("restart_from_checkpoint", {**arguments, "dry_run": True}))
        real = ok(await client.call_tool("restart_from_checkpoint", arguments))
    assert (dry["changed"], dry["replayed"]) == (False, False)
    assert (real["changed"], real["replayed"]) == (True, False)
    assert stack.twin.job("train-02").restarts == 1


async def test_two_concurrent_calls_with_the_same_key_act_once(
    make_stack: MakeStack, open_store: OpenStore
) -> None:
    stack = make_stack(OPERATOR, idempotency=await open_store())
    arguments = {**RESTART, "idempotency_key": "inc-7/restart"}
    async with held(Client(stack.server)) as client:
        answers = await asyncio.gather(
            client.call_tool("restart_from_checkpoint", arguments),
            client.call_tool("restart_from_checkpoint", arguments),
        )
    assert stack.twin.job("train-02").restarts == 1
    acted = [
        a for a in answers if not a.is_error and a.structured_content and not a.structured_content["replayed"]
    ]
    assert len(acted) == 1
    (other,) = [a for a in answers if a is not acted[0]]
    # The other one either waited for nothing and replayed, or found the key still claimed.
    if other.is_error:
        assert "inc-7/restart" in text_of(other) and "still running" in text_of(other)
    else:
        assert other.structured_content is not None and other.structured_content["replayed"] is True


async def test_two_server_replicas_on_one_kv_bucket_act_once(
    make_stack: MakeStack, js: JetStreamContext
) -> None:
    """Two MCP servers (e.g. two agent replicas) over the same cluster share the KV bucket."""
    one = make_stack(OPERATOR, idempotency=await KvIdempotency.open(js))
    two = make_stack(OPERATOR, idempotency=await KvIdempotency.open(js))
    arguments = {**RESTART, "idempotency_key": "inc-7/restart"}
    async with held(Client(one.server)) as first, held(Client(two.server)) as second:
        answers = await asyncio.gather(
            first.call_tool("restart_from_checkpoint", arguments),
            second.call_tool("restart_from_checkpoint", arguments),
        )
        one.twin.advance(PAST_RESTART_S)
        later = ok(await second.call_tool("restart_from_checkpoint", arguments))
    assert one.twin is two.twin
    assert one.twin.job("train-02").restarts == 1
    assert sum(1 for a in answers if not a.is_error and not ok(a)["replayed"]) == 1
    assert later["replayed"] is True


async def test_the_kv_store_keeps_the_first_answer_in_the_bucket(
    make_stack: MakeStack, js: JetStreamContext
) -> None:
    stack = make_stack(OPERATOR, idempotency=await KvIdempotency.open(js))
    async with held(Client(stack.server)) as client:
        answer = ok(
            await client.call_tool("restart_from_checkpoint", {**RESTART, "idempotency_key": "inc-7/restart"})
        )
    kv = await js.key_value(subjects.BUCKET_IDEMPOTENCY)
    entry = await kv.get(f"k.{stable_id(f'{OPERATOR.role}:restart_from_checkpoint', 'inc-7/restart')}")
    assert entry.value is not None
    stored = Claim.model_validate_json(entry.value)
    assert stored.state == "done" and stored.outcome is not None
    assert stored.outcome.model_dump(mode="json") == answer


async def test_a_key_whose_call_is_still_running_is_refused(
    make_stack: MakeStack, js: JetStreamContext
) -> None:
    """A claim left by a call that has not finished (here: put there by hand) is not acted over."""
    store = await KvIdempotency.open(js)
    arguments = {**RESTART, "idempotency_key": "inc-7/restart"}
    await store.claim(f"{OPERATOR.role}:restart_from_checkpoint", "inc-7/restart", fingerprint(arguments))
    stack = make_stack(OPERATOR, idempotency=store)
    async with held(Client(stack.server)) as client:
        result = await client.call_tool("restart_from_checkpoint", arguments)
    message = error(result)
    assert "inc-7/restart" in message and "still running" in message
    assert refusal(result).kind == "in_flight"  # a client retries on the field, not the sentence
    assert stack.twin.job("train-02").restarts == 0


async def test_a_claim_left_by_a_crashed_caller_is_taken_over_after_it_goes_stale(
    make_stack: MakeStack, js: JetStreamContext
) -> None:
    store = await KvIdempotency.open(js)
    arguments = {**RESTART, "idempotency_key": "inc-7/restart"}
    await store.claim(f"{OPERATOR.role}:restart_from_checkpoint", "inc-7/restart", fingerprint(arguments))
    store.stale_after_s = 0.0  # the holder is long gone
    stack = make_stack(OPERATOR, idempotency=store)
    async with held(Client(stack.server)) as client:
        first = ok(await client.call_tool("restart_from_checkpoint", arguments))
        again = ok(await client.call_tool("restart_from_checkpoint", arguments))
    assert first["changed"] is True and again["replayed"] is True
    assert stack.twin.job("train-02").restarts == 1


async def test_a_claim_of_a_caller_whose_incident_lease_is_gone_is_taken_over_at_once(
    js: JetStreamContext,
) -> None:
    """An agent replica died mid-call: its claim is freed as soon as its lease on the incident
    expires (or another replica took the incident), not after ``STALE_AFTER_S``."""
    leases = await Leases.open(js, ttl_s=60)
    store = KvIdempotency(await js.key_value(subjects.BUCKET_IDEMPOTENCY), leases=leases)
    fp = fingerprint({**RESTART, "idempotency_key": "k"})
    scope = scope_of("agent", "restart_from_checkpoint")
    lease = incident_lease("inc-7")
    assert await leases.take(lease, "agent-a") is not None
    assert await store.claim(scope, "sim-a/train-02/restart/1", fp, lease) is None
    with pytest.raises(KeyInFlight):  # its holder still lives: the call is still running
        await store.claim(scope, "sim-a/train-02/restart/1", fp, lease)
    await leases.release(lease, "agent-a")  # what its expiry amounts to
    assert await leases.take(lease, "agent-b") is not None  # the replica taking the incident over
    assert await store.claim(scope, "sim-a/train-02/restart/1", fp, lease) is None


async def test_agent_replicas_with_tokens_of_their_own_share_their_keys(make_stack: MakeStack) -> None:
    stack = make_stack(AGENT)
    arguments = {**ISOLATE, "idempotency_key": "sim-a/node-003/gpu2/isolate_gpu/20261207T060000"}
    async with held(Client(stack.server)) as client:
        first = ok(await client.call_tool("isolate_gpu", arguments))
        stack.identity.principal = AGENT.model_copy(update={"id": "triage-agent-2"})
        again = ok(await client.call_tool("isolate_gpu", arguments))
    assert first["changed"] is True and again["replayed"] is True


async def test_a_replay_is_still_policy_checked(make_stack: MakeStack) -> None:
    stack = make_stack(OPERATOR)
    arguments = {**ISOLATE, "idempotency_key": "inc-7/isolate"}
    async with held(Client(stack.server)) as client:
        ok(await client.call_tool("isolate_gpu", arguments))
        stack.identity.principal = VIEWER
        replay = await client.call_tool("isolate_gpu", arguments)
    assert replay.is_error
    assert stack.audit.entries[-1].decision == "deny"


async def test_a_key_reused_for_another_target_does_not_silently_succeed(make_stack: MakeStack) -> None:
    stack = make_stack(OPERATOR)
    async with held(Client(stack.server)) as client:
        ok(await client.call_tool("isolate_gpu", {**ISOLATE, "idempotency_key": "k"}))
        other = await client.call_tool(
            "isolate_gpu", {"node": "node-004", "gpu": 5, "reason": "Xid 79", "idempotency_key": "k"}
        )
    assert other.is_error or stack.twin.node("node-004").gpus[5].isolated
