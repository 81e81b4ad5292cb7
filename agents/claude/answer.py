"""The structured final answer: its schema (what the model fills in through the ``submit_triage``
tool) and the checks that turn it into a plan — or refuse it, so the rules planner decides."""

from __future__ import annotations

import copy
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agents.facts import Facts
from events.gpu_ref import GpuRef
from events.incident import EntityType, Incident, Plan, PlanNote, RootCause, RunbookInvocation
from runbooks.engine import RunbookParamError, check_params
from runbooks.library import RunbookError, RunbookLibrary

MIN_CONFIDENCE_TO_ACT = 0.6


class AnswerRejected(ValueError):
    """The answer is well-formed but may not become a plan (unknown runbook, outside the incident)."""


class ProposedRunbook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    runbook: str = Field(description="the name of a runbook from the list in the instructions")
    params: dict[str, str | int | bool] = Field(
        default_factory=dict, description="the runbook's parameters, by name"
    )


class TriageAnswer(BaseModel):
    """Diagnosis, root cause, confidence, the runbooks to run and why."""

    model_config = ConfigDict(extra="forbid")

    diagnosis: str = Field(
        min_length=3, max_length=1000, description="what is wrong, in one or two sentences"
    )
    root_cause_type: EntityType = Field(description="what kind of thing is at fault")
    root_cause_id: str = Field(
        min_length=1, max_length=200, description="which one, e.g. node-003/gpu3, node-003, leaf-02, train-01"
    )
    confidence: float = Field(ge=0, le=1, description="probability that the root cause is right")
    disposition: Literal["mitigate", "no_action", "escalate"] = Field(
        description="mitigate: run the runbooks; no_action: benign; escalate: a person must decide"
    )
    runbooks: list[ProposedRunbook] = Field(
        default_factory=list, max_length=4, description="in order; empty unless disposition is mitigate"
    )
    rationale: str = Field(min_length=3, max_length=2000, description="the evidence and reasoning, briefly")
    evidence: list[str] = Field(
        default_factory=list, max_length=8, description="the few log lines or facts that decided it"
    )

    @model_validator(mode="after")
    def _runbooks_match_disposition(self) -> TriageAnswer:
        if (self.disposition == "mitigate") != bool(self.runbooks):
            raise ValueError("disposition 'mitigate' needs runbooks, and only 'mitigate' may have them")
        return self


def answer_tool_schema() -> dict[str, Any]:
    """The JSON schema of ``TriageAnswer`` with its ``$defs`` inlined, as a tool's input_schema."""
    schema = TriageAnswer.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(copy.deepcopy(defs[ref.removeprefix("#/$defs/")]))
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    inlined: dict[str, Any] = inline(schema)
    return inlined


class IncidentScope:
    """The nodes, GPUs and jobs an incident is about: a plan may touch these and nothing else, so a
    planted instruction cannot point the planner at another part of the fleet."""

    def __init__(self, incident: Incident, facts: Facts) -> None:
        self.nodes = {*incident.affected_nodes, facts.node}
        self.gpus = {ref for g in incident.affected_gpus if (ref := GpuRef.maybe(g)) is not None}
        if facts.gpu is not None:
            self.gpus.add(GpuRef(facts.node, facts.gpu))
        self.jobs = {*incident.affected_jobs, *([facts.job] if facts.job else [])}

    def outside(self, params: dict[str, Any]) -> str | None:
        """Why ``params`` reach outside the incident, or None."""
        node, gpu, job = params.get("node"), params.get("gpu"), params.get("job")
        if node is not None and str(node) not in self.nodes:
            return f"node {node} is not part of the incident (its nodes: {', '.join(sorted(self.nodes))})"
        if gpu is not None and GpuRef.maybe(f"{node}/{gpu}") not in self.gpus:
            known = ", ".join(f"{r.node} GPU {r.index}" for r in sorted(self.gpus)) or "none known"
            return f"GPU {gpu} on {node} is not part of the incident (its GPUs: {known})"
        if job is not None and str(job) not in self.jobs:
            return (
                f"job {job} is not part of the incident (its jobs: {', '.join(sorted(self.jobs)) or 'none'})"
            )
        return None


def plan_from_answer(
    answer: TriageAnswer,
    *,
    library: RunbookLibrary,
    scope: IncidentScope,
    planner: str = "claude",
    min_confidence: float = MIN_CONFIDENCE_TO_ACT,
) -> Plan:
    """The plan the answer stands for, every runbook known, its parameters valid and in scope."""
    if answer.disposition == "mitigate" and answer.confidence < min_confidence:
        raise AnswerRejected(
            f"confidence {answer.confidence:.2f} is below {min_confidence:.2f}, too low to act on"
        )
    actions = []
    for proposed in answer.runbooks:
        try:
            runbook = library.get(proposed.runbook)
        except RunbookError as exc:
            raise AnswerRejected(str(exc)) from exc
        params: dict[str, Any] = dict(proposed.params)
        if "reason" in runbook.params and "reason" not in params:
            params["reason"] = f"{answer.diagnosis[:400]} (planner: {planner})"
        try:
            checked = check_params(runbook, params)
        except RunbookParamError as exc:
            raise AnswerRejected(str(exc)) from exc
        if (why := scope.outside(checked)) is not None:
            raise AnswerRejected(f"runbook {runbook.name}: {why}")
        actions.append(RunbookInvocation(runbook=runbook.name, params=checked))
    return Plan(
        planner=planner,
        disposition=answer.disposition,
        rationale=f"{answer.diagnosis} {answer.rationale}".strip(),
        actions=actions,
        root_cause=RootCause(
            entity_type=answer.root_cause_type,
            entity_id=answer.root_cause_id,
            confidence=answer.confidence,
            evidence=[e[:500] for e in answer.evidence],
        ),
        notes=[
            PlanNote(
                what=f"diagnosis by {planner}",
                detail=f"{answer.root_cause_type} {answer.root_cause_id}, confidence {answer.confidence:.2f}",
            )
        ],
    )
