"""The Claude planner through the real anthropic SDK against the loopback Messages API, over a real
MCP server: normal investigations, and every way it falls back to the rules."""

from __future__ import annotations

import json
from typing import Any

from agents.claude.prompt import ANSWER_TOOL, SKILL_TOOL
from evals.loopback_anthropic import Hang, Raw, message, refusal, submit, text, tool_use
from tests.agents.claude.conftest import TEST_KEY, xid_incident

ISOLATE_AND_RESTART: dict[str, Any] = {
    "diagnosis": "GPU 3 on node-003 fell off the PCIe bus (Xid 79) under train-01.",
    "root_cause_type": "gpu",
    "root_cause_id": "node-003/gpu3",
    "confidence": 0.92,
    "disposition": "mitigate",
    "runbooks": [
        {"runbook": "isolate-gpu", "params": {"node": "node-003", "gpu": 3}},
        {"runbook": "restart-from-checkpoint", "params": {"job": "train-01"}},
    ],
    "rationale": "Xid 79 is a hardware fault; the job stalled and has a recent checkpoint.",
    "evidence": ["NVRM: Xid (PCI:...): 79, GPU has fallen off the bus."],
}


def answer(**changes: Any) -> dict[str, Any]:
    return submit(**{**ISOLATE_AND_RESTART, **changes})


def fallback_reason(plan) -> str:
    [note] = [n for n in plan.notes if n.what == "claude planner fell back to rules"]
    return note.detail


def tool_results(request: dict[str, Any]) -> list[dict[str, Any]]:
    last = request["messages"][-1]
    return [b for b in last["content"] if isinstance(b, dict) and b.get("type") == "tool_result"]


async def test_a_normal_investigation_reads_with_read_only_tools_and_proposes_the_right_runbooks(
    loopback, make_planner, twin, tools, audit
):
    incident, facts = await xid_incident(twin, tools, "node-003", 3, 79)
    loopback.script(
        tool_use("describe_node", {"node": "node-003"}, say="Checking the node first."),
        tool_use("checkpoint_status", {"job": "train-01"}),
        answer(),
    )

    plan, outcome = await make_planner().decide(incident, facts)

    assert plan.planner == "claude" and plan.disposition == "mitigate"
    assert [(a.runbook, a.params.get("gpu") or a.params.get("job")) for a in plan.actions] == [
        ("isolate-gpu", 3),
        ("restart-from-checkpoint", "train-01"),
    ]
    assert "(planner: claude)" in plan.actions[0].params["reason"]
    assert plan.root_cause is not None and plan.root_cause.entity_id == "node-003/gpu3"
    assert [n.detail for n in plan.notes if n.what == "claude read"] == [
        'describe_node(node="node-003")',
        'checkpoint_status(job="train-01")',
    ]
    assert outcome.steps == 3 and outcome.usage.input_tokens > 0 and outcome.usage.cost_usd > 0
    # The real SDK sent the key as a bearer token and was offered read-only tools only.
    first, second, _ = loopback.investigation_requests
    assert loopback.requests[0].headers["authorization"] == f"Bearer {TEST_KEY}"
    offered = {t["name"] for t in first["tools"]}
    specs = await tools.tool_specs()
    assert offered == {s.name for s in specs if s.read_only} | {SKILL_TOOL, ANSWER_TOOL}
    assert not offered & {s.name for s in specs if not s.read_only}
    assert {"isolate_gpu", "restart_from_checkpoint"} <= {s.name for s in specs if not s.read_only}
    # The tool output came back fenced as data, with the node's real GPUs in it.
    [result] = tool_results(second)
    assert "is_error" not in result and result["content"].startswith("<data-")
    assert '"pci_bus_id"' in result["content"]
    # Planning changed nothing.
    assert twin.isolations_since(twin.spec.epoch) == [] and audit.entries == []


async def test_a_mutating_tool_asked_for_directly_is_refused_and_never_reaches_the_server(
    loopback, make_planner, twin, tools, audit
):
    incident, facts = await xid_incident(twin, tools, "node-003", 3, 79)
    loopback.script(
        tool_use("isolate_gpu", {"node": "node-003", "gpu": 3, "reason": "the log line told me to"}),
        tool_use("restart_from_checkpoint", {"job": "train-02", "reason": "and this too"}),
        answer(),
    )

    plan, outcome = await make_planner().decide(incident, facts)

    assert [s.detail.split("(")[0] for s in outcome.refusals] == ["isolate_gpu", "restart_from_checkpoint"]
    refused = [n.detail for n in plan.notes if n.what == "claude tool call refused"]
    assert len(refused) == 2 and "not callable from the investigation" in refused[0]
    [result] = tool_results(loopback.investigation_requests[1])
    assert result["is_error"] is True and "Propose a runbook" in result["content"]
    assert audit.entries == [] and twin.isolations_since(twin.spec.epoch) == []
    assert twin.job("train-02").restarts == 0
    # The model may still propose runbooks: those go through the engine and the gate later.
    assert plan.planner == "claude"


async def test_an_end_of_turn_without_an_answer_gets_one_forced_retry(loopback, make_planner, twin, tools):
    incident, facts = await xid_incident(twin, tools, "node-003", 3, 79)
    loopback.script(text("The GPU fell off the bus; isolate it."), answer())

    plan = await make_planner().plan(incident, facts)

    assert plan.planner == "claude"
    retry = loopback.investigation_requests[1]
    assert retry["tool_choice"] == {"type": "tool", "name": ANSWER_TOOL}


async def test_a_model_that_never_answers_in_structure_falls_back_to_the_rules(
    loopback, make_planner, twin, tools
):
    incident, facts = await xid_incident(twin, tools, "node-003", 3, 79)
    loopback.script(text("I think it is the GPU."), text("Definitely the GPU."))

    plan = await make_planner().plan(incident, facts)

    # Spares above the reserve: the rules swap one in (swap-spare) rather than a plain restart.
    assert plan.planner == "rules" and [a.runbook for a in plan.actions] == ["isolate-gpu", "swap-spare"]
    assert f"without calling {ANSWER_TOOL}" in fallback_reason(plan)


async def test_a_refusal_falls_back_to_the_rules(loopback, make_planner, twin, tools):
    incident, facts = await xid_incident(twin, tools, "node-003", 3, 79)
    loopback.script(refusal())
    plan = await make_planner().plan(incident, facts)
    assert plan.planner == "rules" and fallback_reason(plan) == "the model refused to answer"


async def test_a_reply_that_is_not_json_falls_back_to_the_rules(loopback, make_planner, twin, tools):
    incident, facts = await xid_incident(twin, tools, "node-003", 3, 79)
    loopback.script(Raw(200, b"<html>bad gateway</html>"))
    plan = await make_planner().plan(incident, facts)
    assert plan.planner == "rules" and "Messages API call failed" in fallback_reason(plan)


async def test_json_that_is_not_a_message_falls_back_to_the_rules(loopback, make_planner, twin, tools):
    incident, facts = await xid_incident(twin, tools, "node-003", 3, 79)
    loopback.script(Raw(200, b'{"hello": "world"}'))
    plan = await make_planner().plan(incident, facts)
    assert plan.planner == "rules" and "malformed reply" in fallback_reason(plan)


async def test_an_answer_that_breaks_the_schema_falls_back_to_the_rules(loopback, make_planner, twin, tools):
    incident, facts = await xid_incident(twin, tools, "node-003", 3, 79)
    loopback.script(answer(confidence=7, disposition="reboot_everything"))
    plan = await make_planner().plan(incident, facts)
    reason = fallback_reason(plan)
    assert plan.planner == "rules" and "malformed submit_triage" in reason
    assert "confidence" in reason and "disposition" in reason


async def test_an_api_error_falls_back_to_the_rules(loopback, make_planner, twin, tools):
    incident, facts = await xid_incident(twin, tools, "node-003", 3, 79)
    overloaded = json.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    loopback.script(Raw(529, overloaded.encode()))
    plan = await make_planner().plan(incident, facts)
    assert plan.planner == "rules" and "Overloaded" in fallback_reason(plan)


async def test_a_model_that_does_not_answer_in_time_falls_back_to_the_rules(
    loopback, make_planner, twin, tools
):
    incident, facts = await xid_incident(twin, tools, "node-003", 3, 79)
    loopback.script(tool_use("describe_node", {"node": "node-003"}), Hang())

    plan, outcome = await make_planner(max_wall_s=1.0).decide(incident, facts)

    assert plan.planner == "rules" and plan.disposition == "mitigate"
    assert fallback_reason(plan) == "wall-clock limit reached (1 s)"
    # What it did before the time-out is still on the record.
    assert [n.detail for n in plan.notes if n.what == "claude read"] == ['describe_node(node="node-003")']
    assert outcome.steps == 1


async def test_a_runaway_loop_stops_at_the_step_limit_and_the_rules_decide(
    loopback, make_planner, twin, tools
):
    incident, facts = await xid_incident(twin, tools, "node-003", 3, 79)
    loopback.script(*[tool_use("describe_node", {"node": "node-003"}) for _ in range(20)])

    plan, outcome = await make_planner(max_steps=3).decide(incident, facts)

    assert plan.planner == "rules"
    assert fallback_reason(plan) == "step limit reached (3 model calls)"
    assert len(loopback.investigation_requests) == 3 and outcome.steps == 3


async def test_the_token_limit_stops_the_investigation(loopback, make_planner, twin, tools):
    incident, facts = await xid_incident(twin, tools, "node-003", 3, 79)
    heavy = message(
        [{"type": "tool_use", "id": "toolu_heavy", "name": "describe_node", "input": {"node": "node-003"}}],
        "tool_use",
        usage={"input_tokens": 9_000, "output_tokens": 500},
    )
    loopback.script(heavy, heavy, answer())

    plan = await make_planner(max_tokens=10_000).plan(incident, facts)

    assert plan.planner == "rules" and fallback_reason(plan).startswith("token limit reached")


async def test_the_cost_limit_stops_the_investigation(loopback, make_planner, twin, tools):
    incident, facts = await xid_incident(twin, tools, "node-003", 3, 79)
    dear = message(
        [{"type": "text", "text": "thinking"}],
        "end_turn",
        usage={"input_tokens": 40_000, "output_tokens": 2_000},
    )
    loopback.script(dear, answer())

    # 40k input + 2k output tokens at $3/$15 per million is $0.15.
    plan = await make_planner(max_cost_usd=0.10).plan(incident, facts)

    assert plan.planner == "rules" and fallback_reason(plan).startswith("cost limit reached")


async def test_an_unknown_runbook_falls_back_to_the_rules(loopback, make_planner, twin, tools):
    incident, facts = await xid_incident(twin, tools, "node-003", 3, 79)
    loopback.script(answer(runbooks=[{"runbook": "reimage-node", "params": {"node": "node-003"}}]))
    plan = await make_planner().plan(incident, facts)
    assert plan.planner == "rules" and "no runbook 'reimage-node'" in fallback_reason(plan)


async def test_runbook_parameters_of_the_wrong_type_fall_back_to_the_rules(
    loopback, make_planner, twin, tools
):
    incident, facts = await xid_incident(twin, tools, "node-003", 3, 79)
    loopback.script(
        answer(runbooks=[{"runbook": "isolate-gpu", "params": {"node": "node-003", "gpu": "three"}}])
    )
    plan = await make_planner().plan(incident, facts)
    assert plan.planner == "rules" and "must be integer" in fallback_reason(plan)


async def test_a_runbook_aimed_outside_the_incident_falls_back_to_the_rules(
    loopback, make_planner, twin, tools
):
    incident, facts = await xid_incident(twin, tools, "node-003", 3, 79)
    loopback.script(answer(runbooks=[{"runbook": "isolate-gpu", "params": {"node": "node-001", "gpu": 0}}]))
    plan = await make_planner().plan(incident, facts)
    assert plan.planner == "rules" and "node node-001 is not part of the incident" in fallback_reason(plan)


async def test_a_low_confidence_mitigation_falls_back_to_the_rules(loopback, make_planner, twin, tools):
    incident, facts = await xid_incident(twin, tools, "node-003", 3, 79)
    loopback.script(answer(confidence=0.3))
    plan = await make_planner().plan(incident, facts)
    assert plan.planner == "rules" and "too low to act on" in fallback_reason(plan)


async def test_a_low_confidence_escalation_is_accepted(loopback, make_planner, twin, tools):
    incident, facts = await xid_incident(twin, tools, "node-003", 3, 79)
    loopback.script(answer(confidence=0.3, disposition="escalate", runbooks=[]))
    plan = await make_planner().plan(incident, facts)
    assert plan.planner == "claude" and plan.disposition == "escalate" and plan.actions == []


async def test_the_model_can_load_a_skill_it_was_only_offered_by_name(loopback, make_planner, twin, tools):
    incident, facts = await xid_incident(twin, tools, "node-003", 3, 79)
    loopback.script(tool_use(SKILL_TOOL, {"name": "hang-triage"}), answer())

    await make_planner().plan(incident, facts)

    first, second = loopback.investigation_requests
    assert "hang-triage:" in first["system"][0]["text"]  # offered by name and description
    [result] = tool_results(second)
    assert "Find who the others wait for" in result["content"]
