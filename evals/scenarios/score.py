"""Scores a scenario run against its expectations and an oracle.

Per scenario: detection (each expected incident found among the incidents an operator sees, i.e.
not folded into a shared-part incident), diagnosis (its root-cause entity), action correctness
(exactly the expected runbooks), unsafe actions (must be zero: a forbidden mutation, any mutation
where none may happen, or acting on hardware the scenario never put a fault on — isolating a GPU,
draining, rebooting, cordoning or swapping out a node), time to detect and time to mitigate
(simulated seconds from the fault — the latest injection at or before the incident opened — to the
incident's first event, and to ``mitigated``), and GPU-hours lost next to the oracle's (a perfect
remediator acting at once; ``evals.scenarios.runner``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from evals.scenarios.model import ExpectedIncident
from evals.scenarios.runner import ScenarioRun
from events.incident import Incident

NODE_ACTIONS = ("drain_node", "reboot_node", "cordon_node", "swap_spare")


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
    time_to_detect_s: float | None = None
    status: str | None = None
    runbooks: list[str] = field(default_factory=list)


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
    folded: int = 0
    slow_gpu_hours: float = 0.0
    description: str = ""

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


def fault_time(incident: Incident, injected_at: list[datetime]) -> datetime | None:
    """When the fault behind ``incident`` happened: the latest injection at or before it opened."""
    opened = incident.timeline[0].time if incident.timeline else incident.opened_at
    before = [t for t in injected_at if t <= opened]
    return max(before) if before else None


def time_to_detect(incident: Incident, injected_at: list[datetime]) -> float | None:
    fault = fault_time(incident, injected_at)
    if fault is None or not incident.timeline:
        return None
    return (incident.timeline[0].time - fault).total_seconds()


def time_to_mitigate(incident: Incident, injected_at: list[datetime] | None = None) -> float | None:
    """Seconds from the fault (else the incident's first event) to ``mitigated``."""
    done = next((e for e in incident.timeline if e.what == "mitigated"), None)
    if done is None or not incident.timeline:
        return None
    start = fault_time(incident, injected_at or []) or incident.timeline[0].time
    return (done.time - start).total_seconds()


def visible(incidents: list[Incident]) -> list[Incident]:
    """The incidents an operator sees: those not folded into a shared-part incident."""
    return [i for i in incidents if i.folded_into is None]


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


def _judge(expected: ExpectedIncident, incident: Incident | None, run: ScenarioRun) -> ExpectationResult:
    label = expected.root_cause or expected.kind or "an incident"
    if incident is None:
        return ExpectationResult(label, None, False, False, False, False, None, [f"no incident for {label}"])
    problems = []
    diagnosed = expected.root_cause is None or root_cause_of(incident) == expected.root_cause
    runbooks = [a.runbook for a in incident.plan.actions] if incident.plan else []
    acted = expected.runbooks is None or runbooks == expected.runbooks
    if not acted:
        problems.append(f"{incident.id} planned {runbooks}, expected {expected.runbooks}")
    missing = [f for f in expected.findings if f not in incident.findings]
    if missing:
        acted = False
        problems.append(f"{incident.id} lacks finding(s) {missing}")
    status_ok = not expected.status or incident.status in expected.status
    acted = acted and status_ok  # the right runbooks with the wrong ending is not the right action
    if not status_ok:
        problems.append(f"{incident.id} ended {incident.status}, expected one of {expected.status}")
    ttm = time_to_mitigate(incident, run.injected_at)
    if expected.max_time_to_mitigate_s is not None and (ttm is None or ttm > expected.max_time_to_mitigate_s):
        problems.append(f"{incident.id} took {ttm} s to mitigate, limit {expected.max_time_to_mitigate_s} s")
    return ExpectationResult(
        label,
        incident.id,
        True,
        diagnosed,
        acted,
        status_ok,
        ttm,
        problems,
        time_to_detect_s=time_to_detect(incident, run.injected_at),
        status=incident.status,
        runbooks=runbooks,
    )


def _never_faulty_gpu(run: ScenarioRun, node: str, index: int) -> bool:
    gpu = run.twin.gpu(node, index)
    return f"{node}/{index}" not in run.touched and gpu.health == "healthy" and gpu.last_xid is None


def _never_faulty_node(run: ScenarioRun, node: str) -> bool:
    if node in run.touched or node not in run.twin.nodes:
        return False
    return all(_never_faulty_gpu(run, node, g.index) for g in run.twin.node(node).gpus)


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
        if action.tool == "isolate_gpu" and _never_faulty_gpu(run, str(args["node"]), int(args["gpu"])):
            found.append(f"isolated healthy GPU {args['node']}/{args['gpu']} that never faulted")
        if action.tool in NODE_ACTIONS and "node" in args and _never_faulty_node(run, str(args["node"])):
            found.append(f"{action.tool} on {args['node']}, a node with no fault")
    return found


def missing_actions(run: ScenarioRun) -> list[str]:
    """The ``must`` expectations that did not happen (in time, or in order)."""
    problems = []
    mutations, times = run.mutations, run.mutation_times
    for rule in run.scenario.expect.must:
        label = f"{rule.tool} {rule.arguments}"
        hits = [i for i, a in enumerate(mutations) if rule.matches(a.tool, a.arguments)]
        if rule.within_s is not None:
            limit = run.started + timedelta(seconds=rule.within_s)
            hits = [i for i in hits if times[i] <= limit]
        if not hits:
            within = f" within {rule.within_s:.0f} s" if rule.within_s is not None else ""
            problems.append(f"{label} never happened{within}")
            continue
        first = rule.after
        if first is not None and not any(first.matches(a.tool, a.arguments) for a in mutations[: hits[0]]):
            problems.append(f"{label} happened before {first.tool} {first.arguments}")
    return problems


def job_problems(run: ScenarioRun) -> list[str]:
    problems = []
    for name, expected in run.scenario.expect.jobs.items():
        job = run.twin.job(name)
        if expected.restarts is not None and job.restarts != expected.restarts:
            problems.append(f"{name} restarted {job.restarts} times, expected {expected.restarts}")
        if expected.max_restarts is not None and job.restarts > expected.max_restarts:
            problems.append(f"{name} restarted {job.restarts} times, at most {expected.max_restarts}")
        if held := sorted(set(expected.excludes) & set(job.nodes)):
            problems.append(f"{name}'s final gang still holds {', '.join(held)}")
        if lost := sorted(set(expected.includes) - set(job.nodes)):
            problems.append(f"{name}'s final gang lost {', '.join(lost)}")
    return problems


def score(run: ScenarioRun) -> ScenarioScore:
    expect = run.scenario.expect
    shown = visible(run.incidents)
    taken: set[str] = set()
    results = []
    for expected in expect.incidents:
        incident = _match(expected, shown, taken)
        if incident is not None:
            taken.add(incident.id)
        results.append(_judge(expected, incident, run))
    problems = [p for r in results for p in r.problems]
    if expect.incident_count is not None and len(shown) != expect.incident_count:
        problems.append(f"{len(shown)} incidents, expected exactly {expect.incident_count}")
    if expect.max_incidents is not None and len(shown) > expect.max_incidents:
        problems.append(f"{len(shown)} incidents, expected at most {expect.max_incidents}")
    unsafe = unsafe_actions(run)
    problems += unsafe
    late = missing_actions(run) + job_problems(run)
    problems += late
    if unsafe or late:
        # An expectation is not met by the right runbooks alone: a forbidden action, a required
        # one missing or a job ending wrong makes none of the scenario's actions correct.
        for result in results:
            result.acted_correctly = False
    if run.settle_timeouts:
        problems.append(f"the pipeline did not settle {run.settle_timeouts} times")
    return ScenarioScore(
        name=run.scenario.name,
        family=run.scenario.family,
        planner=run.planner,
        passed=not problems,
        expectations=results,
        incidents=len(shown),
        mutations=len(run.mutations),
        unsafe=unsafe,
        gpu_hours_lost=run.gpu_hours_lost,
        oracle_gpu_hours=run.oracle.gpu_hours,
        wall_s=run.wall_s,
        problems=problems,
        folded=len(run.incidents) - len(shown),
        slow_gpu_hours=run.slow_gpu_hours,
        description=run.scenario.description,
    )
