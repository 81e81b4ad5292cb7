"""The final answer's schema and the checks that turn it into a plan."""

from __future__ import annotations

import json

import pytest

from agents.claude.answer import (
    AnswerRejected,
    IncidentScope,
    TriageAnswer,
    answer_tool_schema,
    plan_from_answer,
)
from agents.claude.limits import ClaudeLimits, Meter, price_of
from agents.facts import Facts
from events.incident import Incident
from runbooks.library import RunbookLibrary

INCIDENT = Incident(
    id="inc-1",
    cluster="sim-a",
    kind="xid",
    xids=[48],
    affected_nodes=["node-003"],
    affected_gpus=["node-003/3"],
)
FACTS = Facts(node="node-003", gpu=3, job="train-01", job_state="stalled")


def answer(**changes) -> TriageAnswer:
    base = {
        "diagnosis": "Double-bit ECC error on GPU 3.",
        "root_cause_type": "gpu",
        "root_cause_id": "node-003/gpu3",
        "confidence": 0.8,
        "disposition": "mitigate",
        "runbooks": [{"runbook": "isolate-gpu", "params": {"node": "node-003", "gpu": 3}}],
        "rationale": "Xid 48 needs the GPU out of service before its reset.",
    }
    return TriageAnswer.model_validate({**base, **changes})


def plan(a: TriageAnswer):
    return plan_from_answer(a, library=RunbookLibrary.load(), scope=IncidentScope(INCIDENT, FACTS))


def test_the_tool_schema_is_self_contained():
    schema = answer_tool_schema()
    assert "$ref" not in json.dumps(schema) and "$defs" not in schema
    assert schema["type"] == "object"
    assert set(schema["required"]) >= {
        "diagnosis",
        "root_cause_type",
        "confidence",
        "disposition",
        "rationale",
    }
    assert schema["properties"]["runbooks"]["items"]["properties"]["runbook"]["type"] == "string"


def test_a_mitigation_needs_runbooks_and_only_a_mitigation_may_have_them():
    with pytest.raises(ValueError, match="needs runbooks"):
        answer(runbooks=[])
    with pytest.raises(ValueError, match="needs runbooks"):
        answer(disposition="no_action")


def test_a_valid_answer_becomes_a_plan_with_typed_parameters_and_the_root_cause():
    p = plan(answer(runbooks=[{"runbook": "isolate-gpu", "params": {"node": "node-003", "gpu": "3"}}]))
    [action] = p.actions
    assert action.params["gpu"] == 3 and action.params["reason"].endswith("(planner: claude)")
    assert p.root_cause is not None and p.root_cause.confidence == 0.8


@pytest.mark.parametrize(
    ("params", "why"),
    [
        ({"node": "node-004", "gpu": 3}, "node node-004 is not part of the incident"),
        ({"node": "node-003", "gpu": 2}, "GPU 2 on node-003 is not part of the incident"),
    ],
)
def test_a_runbook_that_reaches_outside_the_incident_is_refused(params, why):
    with pytest.raises(AnswerRejected, match=why):
        plan(answer(runbooks=[{"runbook": "isolate-gpu", "params": params}]))


def test_a_job_outside_the_incident_is_refused():
    with pytest.raises(AnswerRejected, match="job train-02 is not part of the incident"):
        plan(answer(runbooks=[{"runbook": "restart-from-checkpoint", "params": {"job": "train-02"}}]))


def test_an_unknown_parameter_is_refused():
    with pytest.raises(AnswerRejected, match="no parameters"):
        plan(
            answer(
                runbooks=[{"runbook": "isolate-gpu", "params": {"node": "node-003", "gpu": 3, "force": True}}]
            )
        )


def test_the_meter_prices_by_model_family_and_stops_at_each_limit():
    assert price_of("claude-sonnet-4-6") == (3.0, 15.0) and price_of("claude-haiku-4-5") == (1.0, 5.0)
    assert price_of("some-new-model") == (15.0, 75.0)  # unknown: the dearest, so limits stop early
    meter = Meter(ClaudeLimits(max_steps=2, max_tokens=5_000, max_cost_usd=1.0), "claude-sonnet-4-6")
    assert meter.charge(input_tokens=1_000, output_tokens=100) is None
    assert meter.usage.cost_usd == pytest.approx((1_000 * 3 + 100 * 15) / 1e6)
    assert meter.output_budget() == 2_048
    assert meter.charge(input_tokens=1_000, output_tokens=0, cache_read=1_000) is None
    assert meter.before_call() == "step limit reached (2 model calls)"
    over = Meter(ClaudeLimits(max_tokens=1_000), "claude-sonnet-4-6")
    assert over.charge(input_tokens=900, output_tokens=200) == "token limit reached (1,100 of 1,000)"
