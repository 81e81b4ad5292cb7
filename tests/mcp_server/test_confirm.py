"""A person confirms destructive actions through MCP elicitation; a client that cannot ask gets a
refusal; the agent is never asked; a dry run or a confirmed runbook's steps ask nothing."""

from __future__ import annotations

from mcp import Client

from tests.mcp_server.support import AGENT, MakeStack, ScriptedPerson, error, held, ok

ISOLATE = {"node": "node-013", "gpu": 1, "reason": "ECC storm on GPU 1"}


async def test_a_person_who_confirms_gets_the_action(make_stack: MakeStack) -> None:
    stack = make_stack(confirm_destructive=True)
    person = ScriptedPerson("accept", confirm=True)
    async with held(Client(stack.server, elicitation_callback=person)) as client:
        outcome = ok(await client.call_tool("isolate_gpu", ISOLATE))
    assert outcome["changed"] is True
    (question,) = person.questions
    assert "olga" in question and "isolate_gpu on GPU 1 on node-013" in question and "ECC storm" in question
    assert stack.twin.node("node-013").gpus[1].isolated


async def test_a_person_who_declines_or_leaves_the_box_unticked_is_refused_and_audited(
    make_stack: MakeStack,
) -> None:
    for person, words in [
        (ScriptedPerson("decline"), "declined"),
        (ScriptedPerson("cancel"), "cancelled"),
        (ScriptedPerson("accept", confirm=False), "unticked"),
    ]:
        stack = make_stack(confirm_destructive=True)
        async with held(Client(stack.server, elicitation_callback=person)) as client:
            message = error(await client.call_tool("isolate_gpu", ISOLATE))
        assert "not confirmed: isolate_gpu" in message and words in message
        assert not stack.twin.node("node-013").gpus[1].isolated
        (record,) = stack.audit.entries
        assert (record.tool, record.principal, record.decision, record.ok) == (
            "isolate_gpu",
            "olga",
            "deny",
            False,
        )


async def test_a_client_without_elicitation_is_refused_a_destructive_action(make_stack: MakeStack) -> None:
    stack = make_stack(confirm_destructive=True)
    async with held(Client(stack.server)) as client:
        message = error(
            await client.call_tool("restart_from_checkpoint", {"job": "train-02", "reason": "NCCL hang"})
        )
        assert "cannot ask" in message and "elicitation" in message
        # Reading needs no confirmation.
        assert ok(await client.call_tool("describe_node", {"node": "node-013"}))["name"] == "node-013"
    assert stack.twin.job("train-02").restarts == 0


async def test_the_agent_is_never_asked(make_stack: MakeStack) -> None:
    stack = make_stack(AGENT, confirm_destructive=True)
    person = ScriptedPerson("decline")
    async with held(Client(stack.server, elicitation_callback=person)) as client:
        assert ok(await client.call_tool("isolate_gpu", ISOLATE))["changed"] is True
    assert person.questions == []


async def test_a_dry_run_asks_nothing(make_stack: MakeStack) -> None:
    stack = make_stack(confirm_destructive=True)
    async with held(Client(stack.server)) as client:
        outcome = ok(await client.call_tool("isolate_gpu", ISOLATE | {"dry_run": True}))
    assert outcome["dry_run"] is True and outcome["policy"]["decision"] == "allow"


async def test_a_confirmed_runbook_does_not_ask_again_for_each_step(make_stack: MakeStack) -> None:
    stack = make_stack(confirm_destructive=True)
    person = ScriptedPerson("accept")
    async with held(Client(stack.server, elicitation_callback=person)) as client:
        run = ok(
            await client.call_tool(
                "run_runbook",
                {"runbook": "isolate-gpu", "params": {"node": "node-013", "gpu": 1}, "reason": "ECC storm"},
            )
        )
    assert run["status"] == "succeeded"
    (question,) = person.questions
    assert "runbook isolate-gpu" in question and "gpu=1, node=node-013" in question


async def test_the_confirmation_parameter_is_not_part_of_the_tools_input(make_stack: MakeStack) -> None:
    async with held(Client(make_stack().server)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    for name in ("isolate_gpu", "restart_from_checkpoint", "run_runbook"):
        assert "confirmation" not in tools[name].input_schema["properties"], name


async def test_an_older_client_is_asked_in_the_middle_of_the_call(make_stack: MakeStack) -> None:
    # Protocol 2025-11-25 and before: the question is an elicitation/create request during the call
    # (2026-07-28 clients get it in an InputRequiredResult and retry, as the tests above do).
    stack = make_stack(confirm_destructive=True)
    person = ScriptedPerson("accept")
    async with held(Client(stack.server, elicitation_callback=person, mode="legacy")) as client:
        assert client.protocol_version < "2026"
        assert ok(await client.call_tool("isolate_gpu", ISOLATE))["changed"] is True
    assert len(person.questions) == 1
    refused = make_stack(confirm_destructive=True)
    async with held(
        Client(refused.server, elicitation_callback=ScriptedPerson("decline"), mode="legacy")
    ) as client:
        assert "declined" in error(await client.call_tool("isolate_gpu", ISOLATE))


REMEDIATIONS = {
    "swap_spare": {"job": "train-02", "node": "node-010", "reason": "Xid 79 on node-010"},
    "cordon_node": {"node": "node-013", "reason": "flapping NIC"},
    "drain_node": {"node": "node-013", "reason": "before a reset"},
    "reset_gpu": {"node": "node-013", "gpu": 2, "reason": "pending row remap"},
    "reboot_node": {"node": "node-013", "reason": "GPU lost"},
}


async def test_every_destructive_remediation_needs_a_persons_confirmation(make_stack: MakeStack) -> None:
    stack = make_stack(confirm_destructive=True)
    async with held(Client(stack.server)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        for tool, arguments in REMEDIATIONS.items():
            assert "confirmation" not in tools[tool].input_schema["properties"], tool
            message = error(await client.call_tool(tool, arguments))
            assert f"{tool} on" in message and "cannot ask" in message, (tool, message)
    node = stack.twin.node("node-013")
    assert not node.cordoned and node.state == "ready"
    assert "node-010" in stack.twin.job("train-02").nodes
    assert [(r.tool, r.decision) for r in stack.audit.entries] == [(t, "deny") for t in REMEDIATIONS]


async def test_a_person_confirms_a_drain_and_then_the_reset_of_a_gpu(make_stack: MakeStack) -> None:
    stack = make_stack(confirm_destructive=True)
    person = ScriptedPerson("accept", confirm=True)
    async with held(Client(stack.server, elicitation_callback=person)) as client:
        assert ok(await client.call_tool("drain_node", REMEDIATIONS["drain_node"]))["changed"] is True
        assert ok(await client.call_tool("reset_gpu", REMEDIATIONS["reset_gpu"]))["changed"] is True
    drain, reset = person.questions
    assert "drain_node on drain node node-013" in drain and "before a reset" in drain
    assert "reset_gpu on GPU 2 on node-013" in reset
    assert stack.twin.node("node-013").cordoned
