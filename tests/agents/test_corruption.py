"""Silent data corruption in the agent, without the platform: the correlator keeps one incident per
job episode, intake opens it critical with what a rollback needs, and the first stage of the plan
diagnoses the suspects' nodes first (every node of the job when the event names none)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agents import corruption
from agents.correlator import Correlator
from agents.facts import Facts
from agents.intake import absorb, open_incident
from events.incident import RunbookInvocation
from events.models import NumericsEvent, event_key, parse_event

T0 = datetime(2026, 11, 29, 7, 35, tzinfo=UTC)
NODES = ["node-009", "node-010", "node-011", "node-012"]
RUNBOOKS = {"locate-corruption", "diagnostics-verdict", "isolate-gpu", "restart-from-checkpoint", "escalate"}


def numerics(at: float = 0.0, *, eid: str = "n-1", **extra: object) -> NumericsEvent:
    fields: dict[str, object] = {
        "event_id": eid,
        "time": T0 + timedelta(seconds=at),
        "cluster": "sim-a",
        "source": "numerics-detector",
        "job": "train-02",
        "signature": "nonfinite",
        "first_bad_step": 1780,
        "last_good_step": 1773,
        "nodes": NODES,
    }
    return NumericsEvent.model_validate({**fields, **extra})


def facts() -> Facts:
    return Facts(node="node-009", job="train-02")


def test_a_numerics_event_parses_from_the_wire_and_is_keyed_by_its_job():
    event = numerics(value=float("nan"))
    parsed = parse_event(event.model_dump_json())
    assert isinstance(parsed, NumericsEvent) and event_key(parsed) == "train-02"


def test_later_numerics_events_of_the_job_join_its_incident_and_cleared_cancels_it():
    c = Correlator()
    first = c.assign(numerics())
    again = c.assign(numerics(30, eid="n-2"))
    cleared = c.assign(numerics(60, eid="n-3", cleared=True))
    assert first.new and first.incident_kind == "numerics" and first.keys == ("job:train-02",)
    assert again.kind == "duplicate" and again.incident_id == first.incident_id
    assert cleared.kind == "cancel" and cleared.incident_id == first.incident_id


def test_a_cleared_event_with_nothing_open_is_ignored():
    assert Correlator().assign(numerics(cleared=True)).kind == "ignored"


def test_intake_opens_a_critical_incident_about_the_job_with_the_rollback_step():
    event = numerics(suspect_gpus=["node-011/5"], suspect_ranks=[21], signature="grad_spike")
    incident = open_incident("inc-1", event, Correlator().assign(event), T0)
    assert incident.kind == "numerics" and incident.severity == "critical"
    assert "suspected silent data corruption" in incident.title
    assert incident.affected_nodes[0] == "node-011" and set(incident.affected_nodes) == set(NODES)
    assert incident.root_cause is not None and incident.root_cause.entity_id == "node-011/gpu5"
    assert corruption.rollback_step(incident) == 1773


def test_a_later_event_of_the_episode_keeps_the_earliest_last_good_step():
    c = Correlator()
    event = numerics()
    incident = open_incident("inc-1", event, c.assign(event), T0)
    later = numerics(30, eid="n-2", signature="loss_spike", first_bad_step=1900, last_good_step=1890)
    absorb(incident, [later], [c.assign(later)], T0)
    assert corruption.rollback_step(incident) == 1773


def test_the_first_stage_diagnoses_every_node_at_level_3_when_no_rank_is_named():
    event = numerics()
    incident = open_incident("inc-1", event, Correlator().assign(event), T0)
    plan = corruption.first_plan(incident, facts(), RUNBOOKS, "rules")
    assert plan.disposition == "mitigate"
    located = [a.params for a in plan.actions if a.runbook == "locate-corruption"]
    assert [p["node"] for p in located] == NODES and {p["level"] for p in located} == {3}
    assert [a.params["node"] for a in plan.actions if a.runbook == "diagnostics-verdict"] == NODES


def test_the_first_stage_diagnoses_only_the_suspects_node_when_a_rank_is_named():
    event = numerics(suspect_gpus=["node-011/5"])
    incident = open_incident("inc-1", event, Correlator().assign(event), T0)
    plan = corruption.first_plan(incident, facts(), RUNBOOKS, "rules")
    assert {a.params["node"] for a in plan.actions} == {"node-011"}


def test_each_node_and_gpu_of_the_chain_has_a_run_of_its_own():
    event = numerics()
    incident = open_incident("inc-1", event, Correlator().assign(event), T0)
    a = RunbookInvocation(runbook="locate-corruption", params={"node": "node-009"})
    b = RunbookInvocation(runbook="isolate-gpu", params={"node": "node-010", "gpu": 3})
    assert corruption.run_id(incident, a, "inc-1/locate-corruption") == "inc-1/locate-corruption/node-009"
    assert corruption.run_id(incident, b, "inc-1/isolate-gpu") == "inc-1/isolate-gpu/node-010/gpu3"


def test_without_the_runbooks_the_incident_goes_to_a_person():
    event = numerics()
    incident = open_incident("inc-1", event, Correlator().assign(event), T0)
    assert corruption.first_plan(incident, facts(), {"escalate"}, "rules").disposition == "escalate"


def test_in_observe_only_no_diagnostics_verdict_is_waited_for():
    event = numerics()
    incident = open_incident("inc-1", event, Correlator().assign(event), T0)
    verdict = RunbookInvocation(runbook="diagnostics-verdict", params={"node": "node-009"})
    locate = RunbookInvocation(runbook="locate-corruption", params={"node": "node-009", "job": "train-02"})
    assert not corruption.skipped(incident, verdict)
    incident.observe_only = True
    assert corruption.skipped(incident, verdict) and not corruption.skipped(incident, locate)
