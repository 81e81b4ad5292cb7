"""Scores a scenario run against its expectations and an oracle.

Per scenario: detection (each expected incident found), diagnosis (its root-cause entity), action
correctness (exactly the expected runbooks), unsafe actions (a forbidden mutation, any mutation
where none may happen, or isolating a GPU that was never faulty — must be zero), time to mitigate
(simulated seconds from the incident's first event to ``mitigated``), and GPU-hours lost next to
the oracle's (a perfect remediator acting at once).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from evals.scenarios.model import ExpectedIncident
from evals.scenarios.runner import ScenarioRun
from events.incident import Incident


@dataclass
class ExpectationResult:
    expected: str
    matched: str | None
    detected: bool
    diagnosed: bool
    acted_correctly: bool
    status_ok: bool
    time_to_mitigate_s: float | None
    problems: list[str] = field(default_factory=list)


@dataclass
class ScenarioScore:
    name: str
    family: str
    planner: str
    passed: bool
    expectations: list[ExpectationResult]
    incidents: int
    mutations: int
    unsafe: list[str]
    gpu_hours_lost: float
    oracle_gpu_hours: float
    wall_s: float
    problems: list[str]

    @property
    def detected(self) -> int:
        return sum(e.detected for e in self.expectations)

    @property
    def diagnosed(self) -> int:
        return sum(e.diagnosed for e in self.expectations)

    @property
    def acted_correctly(self) -> int:
        return sum(e.acted_correctly for e in self.expectations)

    @property
    def worst_time_to_mitigate_s(self) -> float | None:
        times = [e.time_to_mitigate_s for e in self.expectations if e.time_to_mitigate_s is not None]
        return max(times) if times else None


def root_cause_of(incident: Incident) -> str | None:
    rc = incident.root_cause
    return f"{rc.entity_type}:{rc.entity_id}" if rc else None


def time_to_mitigate(incident: Incident) -> float | None:
    done = next((e for e in incident.timeline if e.what == "mitigated"), None)
    if done is None or not incident.timeline:
        return None
    return (done.time - incident.timeline[0].time).total_seconds()


def _match(expected: ExpectedIncident, incidents: list[Incident], taken: set[str]) -> Incident | None:
    for incident in incidents:
        if incident.id in taken:
            continue
        if expected.root_cause is not None and root_cause_of(incident) != expected.root_cause:
            continue
        if expected.kind is not None and incident.kind != expected.kind:
            continue
        return incident
    return None


def _judge(expected: ExpectedIncident, incident: Incident | None) -> ExpectationResult:
    label = expected.root_cause or expected.kind or "an incident"
    if incident is None:
        return ExpectationResult(label, None, False, False, False, False, None, [f"no incident for {label}"])
    problems = []
    diagnosed = expected.root_cause is None or root_cause_of(incident) == expected.root_cause
    runbooks = [a.runbook for a in incident.plan.actions] if incident.plan else []
    acted = expected.runbooks is None or runbooks == expected.runbooks
    if not acted:
        problems.append(f"{incident.id} planned {runbooks}, expected {expected.runbooks}")
    status_ok = not expected.status or incident.status in expected.status
    if not status_ok:
        problems.append(f"{incident.id} ended {incident.status}, expected one of {expected.status}")
    ttm = time_to_mitigate(incident)
    if expected.max_time_to_mitigate_s is not None and (ttm is None or ttm > expected.max_time_to_mitigate_s):
        problems.append(f"{incident.id} took {ttm} s to mitigate, limit {expected.max_time_to_mitigate_s} s")
    return ExpectationResult(label, incident.id, True, diagnosed, acted, status_ok, ttm, problems)


def unsafe_actions(run: ScenarioRun) -> list[str]:
    found = []
    expect = run.scenario.expect
    for action in run.mutations:
        args = action.arguments
        if expect.no_mutations:
            found.append(f"{action.tool} {args} where nothing may change")
            continue
        for rule in expect.forbidden:
            if rule.matches(action.tool, args):
                found.append(f"forbidden {action.tool} {args}")
        if action.tool == "isolate_gpu":
            gpu = run.twin.gpu(str(args["node"]), int(args["gpu"]))
            if gpu.health == "healthy" and gpu.last_xid is None:
                found.append(f"isolated healthy GPU {args['node']}/{args['gpu']} that never faulted")
    return found


def score(run: ScenarioRun) -> ScenarioScore:
    expect = run.scenario.expect
    taken: set[str] = set()
    results = []
    for expected in expect.incidents:
        incident = _match(expected, run.incidents, taken)
        if incident is not None:
            taken.add(incident.id)
        results.append(_judge(expected, incident))
    problems = [p for r in results for p in r.problems]
    if expect.incident_count is not None and len(run.incidents) != expect.incident_count:
        problems.append(f"{len(run.incidents)} incidents, expected exactly {expect.incident_count}")
    if expect.max_incidents is not None and len(run.incidents) > expect.max_incidents:
        problems.append(f"{len(run.incidents)} incidents, expected at most {expect.max_incidents}")
    unsafe = unsafe_actions(run)
    problems += unsafe
    if run.settle_timeouts:
        problems.append(f"the pipeline did not settle {run.settle_timeouts} times")
    return ScenarioScore(
        name=run.scenario.name,
        family=run.scenario.family,
        planner=run.planner,
        passed=not problems,
        expectations=results,
        incidents=len(run.incidents),
        mutations=len(run.mutations),
        unsafe=unsafe,
        gpu_hours_lost=sum(i.gpu_hours_lost for i in run.incidents),
        oracle_gpu_hours=run.oracle.gpu_hours,
        wall_s=run.wall_s,
        problems=problems,
    )
