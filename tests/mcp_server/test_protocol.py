"""The protocol's live features: completions from the live fleet, logging levels, resource change
events fed from the incidents NATS publishes, and the spec's error codes for unknown names."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import (
    INVALID_PARAMS,
    LoggingMessageNotificationParams,
    PromptReference,
    ResourceTemplateReference,
)
from nats.aio.client import Client as NatsClient

from events import subjects
from mcp_server.protocol import MAX_COMPLETIONS, Completer, LogLevels, ResourceFeed, subscribable
from mcp_server.tools.progress import run_message
from runbooks.state import RunState
from tests.mcp_server.support import VIEWER, MakeStack, held, text_of


async def _completions(
    client: Client,
    ref: PromptReference | ResourceTemplateReference,
    name: str,
    value: str,
    context: dict[str, str] | None = None,
) -> list[str]:
    result = await client.complete(ref, {"name": name, "value": value}, context_arguments=context)
    return list(result.completion.values)


async def test_prompt_arguments_complete_from_the_live_fleet(client: Client) -> None:
    nodes = await _completions(
        client, PromptReference(type="ref/prompt", name="triage_node"), "node", "node-01"
    )
    assert nodes == [f"node-{n:03d}" for n in range(10, 17)]


async def test_gpu_indices_complete_for_the_node_already_chosen(client: Client) -> None:
    ref = PromptReference(type="ref/prompt", name="gpu_health")
    assert await _completions(client, ref, "gpu", "", {"node": "node-003"}) == [str(i) for i in range(8)]
    assert await _completions(client, ref, "gpu", "", {"node": "node-404"}) == []
    assert await _completions(client, ref, "gpu", "") == []


async def test_incident_ids_complete_for_the_incident_template(client: Client) -> None:
    ref = ResourceTemplateReference(type="ref/resource", uri="incident://{incident_id}")
    found = await _completions(client, ref, "incident_id", "inc-xid79")
    assert found == ["inc-xid79-node-003"]


async def test_completions_are_capped_at_the_specs_hundred(make_stack: MakeStack) -> None:
    stack = make_stack()
    completer = Completer(stack.deps)

    async def many(argument: str, chosen: dict[str, str]) -> list[str]:
        return [f"node-{i:04d}" for i in range(250)]

    completer.candidates = many  # type: ignore[method-assign]
    completion = await completer.complete("node", "node-0", {})
    assert len(completion.values) == MAX_COMPLETIONS
    assert completion.total == 250 and completion.has_more is True


def test_a_log_level_filters_what_a_principal_hears() -> None:
    levels = LogLevels()
    assert levels.wants("alice", "info") and not levels.wants("alice", "debug")
    levels.set("alice", "warning")
    assert not levels.wants("alice", "info") and levels.wants("alice", "error")
    assert levels.wants("bob", "info")  # one principal's wish is theirs alone


async def test_an_unknown_prompt_or_a_missing_argument_is_invalid_params(client: Client) -> None:
    with pytest.raises(MCPError) as unknown:
        await client.get_prompt("no_such_prompt", {})
    assert unknown.value.error.code == INVALID_PARAMS
    with pytest.raises(MCPError) as missing:
        await client.get_prompt("triage_node", {})
    assert missing.value.error.code == INVALID_PARAMS and "node" in missing.value.error.message


async def test_an_unknown_resource_is_not_found_not_an_internal_error(client: Client) -> None:
    with pytest.raises(MCPError) as raised:
        await client.read_resource("incident://does-not-exist")
    assert raised.value.error.code == INVALID_PARAMS and "does-not-exist" in raised.value.error.message


async def test_an_unknown_tool_is_a_protocol_error(client: Client) -> None:
    with pytest.raises(MCPError) as raised:
        await client.call_tool("no_such_tool", {})
    assert raised.value.error.code == INVALID_PARAMS and "no_such_tool" in raised.value.error.message


async def test_a_hidden_tool_of_a_read_only_server_is_refused_not_unknown(make_stack: MakeStack) -> None:
    stack = make_stack(read_only=True)
    async with held(Client(stack.server)) as client:
        refused = await client.call_tool("cordon_node", {"node": "node-003", "reason": "x"})
    assert refused.is_error and "read-only" in text_of(refused)


def test_only_resources_that_change_can_be_subscribed() -> None:
    assert (
        subscribable("incident://inc-1")
        and subscribable("incidents://open")
        and subscribable("fleet://summary")
    )
    assert (
        not subscribable("incident://")
        and not subscribable("runbook://index")
        and not subscribable("test://x")
    )


async def test_an_incident_published_on_nats_reaches_a_listening_client(
    make_stack: MakeStack, nc: NatsClient
) -> None:
    stack = make_stack()
    assert stack.server.live is not None
    feed = ResourceFeed(stack.server.live, nc)
    await feed.start()
    try:
        async with (
            held(Client(stack.server)) as client,
            client.listen(resource_subscriptions=["incident://inc-7", "incidents://open"]) as listening,
        ):
            record = json.dumps({"id": "inc-7", "status": "mitigating"}).encode()
            await nc.publish(subjects.incident("sim-a", "inc-7"), record)
            await nc.flush()
            seen: set[str] = set()
            async with asyncio.timeout(10):
                async for event in listening:
                    seen.add(getattr(event, "uri", ""))
                    if {"incident://inc-7", "incidents://open"} <= seen:
                        break
    finally:
        await feed.stop()
    assert {"incident://inc-7", "incidents://open"} <= seen
    assert feed.delivered == 1


# -- progress and logging of tool calls --------------------------------------------------------------


async def test_a_long_tool_reports_its_progress_to_a_caller_who_asked(make_stack: MakeStack) -> None:
    stack = make_stack()
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with held(Client(stack.server)) as client:
        result = await client.call_tool(
            "drain_node", {"node": "node-013", "reason": "bad GPU"}, progress_callback=on_progress
        )
    assert not result.is_error
    assert [p for p, _, _ in seen] == [0, 1, 2, 3] and all(t == 3 for _, t, _ in seen)
    assert "checking policy for drain_node node-013" in (seen[0][2] or "")
    assert "changed" in (seen[-1][2] or "")


async def test_a_runbook_reports_each_step_it_finishes(make_stack: MakeStack) -> None:
    stack = make_stack()
    seen: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message or "")

    async with held(Client(stack.server)) as client:
        result = await client.call_tool(
            "run_runbook",
            {"runbook": "isolate-gpu", "params": {"node": "node-013", "gpu": 1}, "reason": "ECC storm"},
            progress_callback=on_progress,
        )
    assert not result.is_error, text_of(result)
    assert any("step isolate (isolate_gpu) done" in m for m in seen), seen


def test_a_parked_run_says_it_waits_for_an_approval() -> None:
    state = RunState(run_id="r", runbook="swap-spare", params={}, approval_id="apr-1")
    assert run_message(state) == "runbook swap-spare parked: waiting for approval apr-1"


async def test_tool_calls_log_what_they_did_and_refusals_warn(make_stack: MakeStack) -> None:
    stack = make_stack()
    logged: list[tuple[str, Any]] = []

    async def on_log(params: LoggingMessageNotificationParams) -> None:
        logged.append((params.level, params.data))

    async with held(Client(stack.server, logging_callback=on_log, log_level="info")) as client:
        assert not (await client.call_tool("cordon_node", {"node": "node-013", "reason": "flaky"})).is_error
        stack.identity.principal = VIEWER
        assert (await client.call_tool("cordon_node", {"node": "node-014", "reason": "flaky"})).is_error
    levels = [(level, data["tool"]) for level, data in logged]
    assert ("info", "cordon_node") in levels and ("warning", "cordon_node") in levels
    warning = next(data for level, data in logged if level == "warning")
    assert "refused (denied" in warning["message"]
