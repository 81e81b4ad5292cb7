"""Silent data corruption: from a job whose numerics went wrong to the GPU that computes wrong results.

Practice (ByteDance's ByteRobust, Google's SDC work, Glenn Lockwood's notes): stop the job, run
active diagnostics on its nodes to find the bad GPU, take it out, and roll back to a checkpoint from
*before* the corruption began (the latest checkpoint may hold corrupted weights). Runbooks have no
loops and no branches, so the agent chains them in stages, each stage appended to the incident's
plan (KV, compare-and-set) before it runs, so any replica resumes the chain where it stands:

1. ``locate-corruption`` (stop the job, start DCGM diagnostics at level 3: the GEMM ``diagnostic``
   plugin catches wrong results) on the suspect GPUs' nodes when the event names some, else on
   every node of the job; then ``diagnostics-verdict`` on each (waits for the verdict).
2. A GPU failed: ``isolate-gpu`` for each failing GPU, then ``restart-from-checkpoint`` with
   ``at_or_before_step`` = the last good step (the restart replaces the node that lost a GPU with a
   warm spare). No GPU failed but nodes of the job are still undiagnosed: stage 1 on them.
3. No GPU failed anywhere: a one-off corruption; roll back anyway and keep watching. A second such
   episode of the same job within 24 hours goes to a person with the evidence instead.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from typing import Any

from agents.facts import Facts
from agents.store import IncidentStore
from contracts.client import ToolClient
from events.gpu_ref import GpuRef
from events.incident import Incident, Plan, RootCause, RunbookInvocation

LOCATE, VERDICT = "locate-corruption", "diagnostics-verdict"
LEVEL = 3
"""``dcgmi diag -r 3``: the lowest level whose plugins (``diagnostic``, ``targeted_stress``) see
wrong compute results; levels 1-2 pass a GPU that only corrupts."""
REPEAT_WINDOW = timedelta(hours=24)
NO_CULPRIT = "numerics.no_culprit"
"""Finding of an episode whose diagnostics found no bad GPU (a transient corruption)."""


def numerics_of(incident: Incident) -> dict[str, Any]:
    found = getattr(incident, "numerics", None)
    return dict(found) if isinstance(found, dict) else {}


def rollback_step(incident: Incident) -> int | None:
    """The step a restart must restore at or before: the last good step, else the one before the
    first bad step."""
    known = numerics_of(incident)
    good, first = known.get("last_good_step"), known.get("first_bad_step")
    if isinstance(good, int):
        return good
    return max(0, first - 1) if isinstance(first, int) else None


def _locate(job: str, nodes: list[str]) -> list[RunbookInvocation]:
    return [
        RunbookInvocation(runbook=LOCATE, params={"job": job, "node": n, "level": LEVEL}) for n in nodes
    ] + [RunbookInvocation(runbook=VERDICT, params={"node": n}) for n in nodes]


def job_of(incident: Incident, facts: Facts | None = None) -> str:
    known = numerics_of(incident).get("job")
    return str(known or (facts.job if facts and facts.job else None) or incident.affected_jobs[0])


def first_plan(incident: Incident, facts: Facts, runbooks: Collection[str], planner: str) -> Plan:
    """Stage 1: diagnose the suspects' nodes (or every node of the job)."""
    job = job_of(incident, facts)
    if LOCATE not in runbooks or VERDICT not in runbooks or not incident.affected_nodes:
        return Plan(
            planner=planner,
            disposition="escalate",
            rationale=f"suspected silent data corruption on {job}, and no way to diagnose its nodes here",
        )
    suspects = list(
        dict.fromkeys(GpuRef.parse(g).node for g in numerics_of(incident).get("suspect_gpus", []))
    )
    nodes = suspects or list(incident.affected_nodes)
    where = f"the suspect node(s) {', '.join(nodes)} first" if suspects else f"every node of {job}"
    return Plan(
        planner=planner,
        disposition="mitigate",
        rationale=(
            f"suspected silent data corruption on {job} (no Xid, no ECC error): stop it and run DCGM "
            f"diagnostics level {LEVEL} (the GEMM check that catches wrong results) on {where}; then "
            f"isolate what fails and restore a checkpoint at or before step {rollback_step(incident)}"
        ),
        actions=_locate(job, nodes),
    )


def run_id(incident: Incident, invocation: RunbookInvocation, base: str) -> str:
    """One run per node (and GPU) of the chain: ``base`` (the incident's run id for the runbook)
    would make the second node's diagnostics answer with the first's run."""
    params = invocation.params
    if incident.kind != "numerics" or "node" not in params:
        return base
    gpu = f"/gpu{params['gpu']}" if "gpu" in params else ""
    return f"{base}/{params['node']}{gpu}"


def skipped(incident: Incident, invocation: RunbookInvocation) -> bool:
    """In observe-only the diagnostics are dry runs: no verdict will come, so none is waited for."""
    return incident.observe_only and invocation.runbook == VERDICT


def concluded(plan: Plan) -> bool:
    return any(a.runbook not in (LOCATE, VERDICT) for a in plan.actions)


async def next_stage(
    incident: Incident, tools: ToolClient, store: IncidentStore, clock: Callable[[], datetime]
) -> Incident | None:
    """Once every run of the plan has finished: the next stage appended to the plan (and the
    verdict on the timeline), or None when the chain is over."""
    plan = incident.plan
    if incident.kind != "numerics" or plan is None or incident.observe_only or concluded(plan):
        return None
    job = job_of(incident)
    diagnosed = list(dict.fromkeys(a.params["node"] for a in plan.actions if a.runbook == VERDICT))
    failing: list[tuple[str, int, list[str]]] = []
    evidence: list[str] = []
    for node in diagnosed:
        result = await tools.call("diagnostics_report", {"node": node})
        report = result.structured if result.ok and isinstance(result.structured, dict) else None
        if report is None or report.get("state") not in ("passed", "failed"):
            evidence.append(f"{node}: no diagnostics verdict ({result.text[:200]})")
            continue
        bad = [g for g in report.get("gpus", []) if not g.get("passed")]
        failing += [(node, int(g["gpu"]), list(g.get("failed_tests", []))) for g in bad]
        evidence.append(
            f"{node}: DCGM level {report.get('level')} {report['state']}"
            + "".join(f"; GPU {g['gpu']} failed {', '.join(g.get('failed_tests', []))}" for g in bad)
        )
    remaining = [n for n in incident.affected_nodes if n not in diagnosed]
    step = rollback_step(incident)
    restart = RunbookInvocation(
        runbook="restart-from-checkpoint",
        params={
            "job": job,
            "at_or_before_step": step,
            "reason": f"silent data corruption: restore step <= {step}",
        },
    )
    root: RootCause | None = None
    finding: str | None = None
    if failing:
        actions = [
            RunbookInvocation(
                runbook="isolate-gpu",
                params={
                    "node": node,
                    "gpu": gpu,
                    "reason": f"silent data corruption: DCGM diagnostics failed {', '.join(tests)}",
                },
            )
            for node, gpu, tests in failing
        ] + [restart]
        gpus = [GpuRef(node, gpu) for node, gpu, _ in failing]
        root = RootCause(
            entity_type="gpu" if len(gpus) == 1 else "job",
            entity_id=gpus[0].entity_id if len(gpus) == 1 else job,
            confidence=0.95,
            evidence=evidence,
        )
        what = f"GPU {', '.join(map(str, gpus))} computes wrong results: isolate, restore step <= {step} on a spare"
    elif remaining:
        actions = _locate(job, remaining)
        what = f"no GPU failed on {', '.join(diagnosed)}: diagnose the rest of {job} ({', '.join(remaining)})"
    elif await _earlier_episode(incident, store, clock()):
        actions = [
            RunbookInvocation(
                runbook="escalate",
                params={
                    "node": incident.affected_nodes[0],
                    "summary": f"{job}: silent data corruption again within 24 h and no GPU fails DCGM "
                    f"level {LEVEL}; the job stays stopped for a person to look",
                    "urgency": "high",
                },
            )
        ]
        finding = NO_CULPRIT
        what = f"second corruption of {job} within 24 h with no culprit found: to a person with the evidence"
    else:
        actions = [restart]
        finding = NO_CULPRIT
        what = f"every GPU of {job} passed: a one-off corruption; restore step <= {step} and keep watching"
    now = clock()

    def apply(inc: Incident) -> None:
        if inc.plan is None or concluded(inc.plan) or inc.plan.actions != plan.actions:
            return  # another replica moved the chain on meanwhile
        inc.plan.actions = [*inc.plan.actions, *actions]
        for line in evidence:
            inc.note("diagnostics verdict", line, at=now)
        inc.note("next stage", what + " → " + ", ".join(a.runbook for a in actions), at=now)
        if root is not None:
            inc.root_cause = root
            for ref in (GpuRef(n, g) for n, g, _ in failing):
                if str(ref) not in inc.affected_gpus:
                    inc.affected_gpus.append(str(ref))
        if finding and finding not in inc.findings:
            inc.findings.append(finding)

    return await store.update(incident.id, apply)


async def _earlier_episode(incident: Incident, store: IncidentStore, now: datetime) -> bool:
    """Another numerics incident of the same job within 24 hours whose diagnostics found nothing."""
    job = job_of(incident)
    for other in await store.list_incidents(limit=10_000):
        if other.id == incident.id or other.kind != "numerics" or NO_CULPRIT not in other.findings:
            continue
        if job_of(other) == job and timedelta(0) <= now - other.opened_at <= REPEAT_WINDOW:
            return True
    return False
