"""Rules for the fault families beyond the Xid catalog: ECC counters, hangs, slowdowns, shared parts.

Each rule says why in the plan's rationale, in the words an on-call engineer would use:

- double-bit ECC error: isolate the GPU and restart the job from its checkpoint;
- row remap pending (nothing worse): a GPU reset applies the remap — now if the GPU is idle, else
  deferred until it is (a healthy job is never interrupted for it);
- remap failure, exhausted spare rows, retired pages at the hard limit: isolate, and escalate for
  replacement (an RMA criterion);
- hang: restart from the checkpoint without the node of the first-stalled rank (``swap-spare``);
- one slow node: swap in a spare (without ``swap-spare``: isolate its GPU and restart, so the
  scheduler leaves it out); a uniform slowdown is the workload's and gets no node action;
- a shared switch, rack or NVLink domain: mark it suspect, keep the healthy nodes under it in
  service, escalate to its owner — never isolate dozens of healthy nodes for one bad part.
A repeated offender (suspected bad hardware) keeps its containment but goes to a person.
"""

from __future__ import annotations

from collections.abc import Collection

from agents import corruption
from agents.facts import Facts
from events.gpu_ref import GpuRef
from events.incident import Incident, Plan, RunbookInvocation

ISOLATE, RESTART, RESET, SWAP = "isolate-gpu", "restart-from-checkpoint", "reset-gpu", "swap-spare"
ESCALATE = "escalate"
OWNERS: dict[str, str] = {
    "switch": "the network owner",
    "rack": "the datacenter owner (power and cooling)",
    "nvlink_domain": "the hardware owner of the NVLink domain (NVSwitch trays)",
}
LABELS: dict[str, str] = {"switch": "leaf switch", "rack": "rack", "nvlink_domain": "NVLink domain"}
REPLACE_GPU = ("ecc.remap_failure", "ecc.remap_rows_exhausted", "ecc.retired_pages_hard")
RESET_FOR = ("ecc.remap_pending", "ecc.retired_pending")


def family_plan(incident: Incident, facts: Facts, runbooks: Collection[str], planner: str) -> Plan | None:
    """The plan for a hang, slowdown, ECC or shared-part incident; None for the Xid rules."""
    if incident.kind in OWNERS:
        return _shared_part(incident, planner)
    if incident.kind == "node":
        return _node(incident, facts, runbooks, planner)
    if incident.kind == "hang":
        return _hang(incident, facts, runbooks, planner)
    if incident.kind == "throughput":
        return _slowdown(incident, facts, runbooks, planner)
    if incident.kind == "ecc":
        return _ecc(incident, facts, runbooks, planner)
    if incident.kind == "numerics":
        return corruption.first_plan(incident, facts, runbooks, planner)
    return None


def suspected_bad_hardware(plan: Plan, incident: Incident, facts: Facts, runbooks: Collection[str]) -> Plan:
    """A repeated offender: keep the containment, and hand the part to a person (a hardware ticket
    and a page through the ``escalate`` runbook, where it exists)."""
    if "suspected_bad_hardware" not in incident.findings:
        return plan
    why = next(
        (e.detail for e in incident.timeline if e.what == "repeated offender"),
        "repeated incidents on this part",
    )
    actions = isolate_before_restart(list(plan.actions), facts, why)
    if ESCALATE in runbooks and not any(a.runbook == ESCALATE for a in actions):
        params: dict[str, object] = {"node": facts.node, "summary": f"suspected bad hardware: {why}"}
        if facts.gpu is not None:
            params["gpu"] = facts.gpu
        params["evidence"] = list(incident.root_cause.evidence[:10]) if incident.root_cause else []
        actions.append(RunbookInvocation(runbook=ESCALATE, params=params))
    rationale = plan.rationale
    if "Suspected bad hardware" not in rationale:
        rationale += f". Suspected bad hardware ({why}): escalate for diagnostics or replacement"
    return plan.model_copy(update={"disposition": "escalate", "rationale": rationale, "actions": actions})


def isolate_before_restart(
    actions: list[RunbookInvocation], facts: Facts, why: str
) -> list[RunbookInvocation]:
    """A GPU suspected bad never gets its job back: when the plan restarts (or swaps) a job and does
    not isolate the GPU, isolate it first, so the scheduler places the gang elsewhere."""
    restarts = [i for i, a in enumerate(actions) if a.runbook in (RESTART, SWAP)]
    isolated = any(a.runbook == ISOLATE for a in actions)
    if facts.gpu is None or not restarts or isolated:
        return actions
    isolate = RunbookInvocation(
        runbook=ISOLATE,
        params={"node": facts.node, "gpu": facts.gpu, "reason": f"suspected bad hardware: {why}"},
    )
    return [*actions[: restarts[0]], isolate, *actions[restarts[0] :]]


def _job(incident: Incident, facts: Facts) -> str | None:
    return incident.affected_jobs[0] if incident.affected_jobs else facts.job


def _restart(job: str | None, facts: Facts) -> list[RunbookInvocation]:
    if not job or (facts.job == job and facts.job_state in ("restarting", "running")):
        return []
    return [RunbookInvocation(runbook=RESTART, params={"job": job})]


def _ecc(incident: Incident, facts: Facts, runbooks: Collection[str], planner: str) -> Plan:
    found = set(incident.findings)
    where = f"GPU {facts.gpu} on {facts.node}"
    if facts.gpu is None:
        return Plan(
            planner=planner, disposition="escalate", rationale=f"ECC fault on {facts.node}, GPU index unknown"
        )
    isolate = RunbookInvocation(
        runbook=ISOLATE,
        params={"node": facts.node, "gpu": facts.gpu, "reason": f"ECC: {', '.join(sorted(found))}"},
    )
    restart = _restart(facts.job, facts)
    then = f" and restart job {facts.job} from its checkpoint" if restart else ""
    if "ecc.dbe" in found:
        why = f"double-bit (uncorrectable) ECC error on {where}: isolate it{then}; a GPU reset applies the pending row remap once it is idle"
        return Plan(planner=planner, disposition="mitigate", rationale=why, actions=[isolate, *restart])
    if found & set(REPLACE_GPU):
        bad = ", ".join(sorted(found & set(REPLACE_GPU)))
        why = f"{bad} on {where}: the GPU must be replaced (an RMA criterion); isolate it{then} and escalate"
        return Plan(planner=planner, disposition="escalate", rationale=why, actions=[isolate, *restart])
    if found & set(RESET_FOR):
        pending = "a row remap is pending" if "ecc.remap_pending" in found else "pages are pending retirement"
        if facts.job:
            # NVIDIA: the remap is applied at the next GPU reset and the GPU keeps working until
            # then; a healthy job is never interrupted for it. The reset waits for the GPU to idle.
            why = (
                f"{pending} on {where} with no uncorrectable error: nothing to contain; job {facts.job} "
                f"keeps running and the GPU reset that applies it is deferred until the GPU is idle "
                f"or the job ends"
            )
            later = [RunbookInvocation(runbook=RESET, params={"node": facts.node, "gpu": facts.gpu})]
            if RESET not in runbooks:
                later, why = [], why + f" (no {RESET} runbook here: a person schedules it)"
            return Plan(planner=planner, disposition="no_action", rationale=why, deferred=later)
        if RESET in runbooks:
            reset = RunbookInvocation(runbook=RESET, params={"node": facts.node, "gpu": facts.gpu})
            why = f"{pending} on {where}, the GPU idle: reset it now, which applies it (no error to contain)"
            return Plan(planner=planner, disposition="mitigate", rationale=why, actions=[reset])
        why = f"{pending} on {where}: schedule a GPU reset (no {RESET} runbook here; a person does it)"
        return Plan(planner=planner, disposition="escalate", rationale=why)
    why = f"{', '.join(sorted(found))} on {where} is a trend to watch, not a fault to act on"
    return Plan(planner=planner, disposition="no_action", rationale=why)


def _hang(incident: Incident, facts: Facts, runbooks: Collection[str], planner: str) -> Plan:
    job = _job(incident, facts)
    if not job:
        return Plan(planner=planner, disposition="escalate", rationale="a hang with no job to restart")
    if facts.job == job and facts.job_state == "restarting":
        why = f"{job} stopped progressing while a restart of it is under way: that restart covers it; nothing more"
        return Plan(planner=planner, disposition="no_action", rationale=why)
    rc = incident.root_cause
    if "hang.culprit" in incident.findings and rc is not None and rc.entity_type == "node":
        node = rc.entity_id
        if SWAP in runbooks:
            why = f"{job} hung; its first-stalled rank ran on {node}: restart from the checkpoint without {node} (swap in a spare)"
            return Plan(
                planner=planner,
                disposition="mitigate",
                rationale=why,
                actions=[RunbookInvocation(runbook=SWAP, params={"job": job, "node": node})],
            )
        why = f"{job} hung; its first-stalled rank ran on {node}: restart from the checkpoint (no {SWAP} runbook, so the scheduler decides whether {node} stays)"
        return Plan(
            planner=planner, disposition="mitigate", rationale=why, actions=_restart(job, Facts(node=node))
        )
    why = f"{job} hung with no rank stalled first: restart it from its checkpoint; no node to blame"
    # A hung job still looks "running" to its scheduler: only a restart under way covers it (above).
    return Plan(
        planner=planner, disposition="mitigate", rationale=why, actions=_restart(job, Facts(node=facts.node))
    )


def _slowdown(incident: Incident, facts: Facts, runbooks: Collection[str], planner: str) -> Plan:
    job = _job(incident, facts)
    found = set(incident.findings)
    if "throughput.straggler" in found and job:
        nodes = incident.affected_nodes
        if len(nodes) == 1 and SWAP in runbooks:
            why = f"{job} waits for one slow node, {nodes[0]}: swap in a spare for it"
            swap = RunbookInvocation(runbook=SWAP, params={"job": job, "node": nodes[0]})
            return Plan(planner=planner, disposition="mitigate", rationale=why, actions=[swap])
        if len(nodes) == 1 and len(incident.affected_gpus) == 1:
            culprit = GpuRef.parse(incident.affected_gpus[0])
            node, gpu = culprit.node, culprit.index
            why = (
                f"{job} waits for GPU {gpu} of {node}: isolate it and restart the job from its checkpoint, "
                f"so the scheduler replaces {node} with a spare (no {SWAP} runbook)"
            )
            isolate = RunbookInvocation(
                runbook=ISOLATE, params={"node": node, "gpu": gpu, "reason": f"straggler in {job}"}
            )
            restart = RunbookInvocation(runbook=RESTART, params={"job": job})
            return Plan(planner=planner, disposition="mitigate", rationale=why, actions=[isolate, restart])
        why = f"{job} waits for {len(nodes)} slow nodes ({', '.join(nodes[:8])}): look for what they share before evicting any"
        return Plan(planner=planner, disposition="escalate", rationale=why)
    if "throughput.network" in found:
        where = incident.root_cause.entity_id if incident.root_cause else "its fabric"
        why = f"{job}'s collectives are slower across {where}; no single part stands out: escalate to {OWNERS['switch']}; no node action"
        return Plan(planner=planner, disposition="escalate", rationale=why)
    why = (
        f"{job} is uniformly slower with no slow rank or link: usually the workload or its configuration, "
        "which evicting nodes does not fix; no action"
    )
    return Plan(planner=planner, disposition="no_action", rationale=why)


def _node(incident: Incident, facts: Facts, runbooks: Collection[str], planner: str) -> Plan:
    """The same fault on most GPUs of one node at once: the node (NVSwitch, baseboard, power,
    driver) is at fault, not each GPU. Swap the node out of its job's gang (the job restarts on a
    spare), one ticket for the node, and the drain-and-reboot queued for when it is out of work."""
    node = incident.entity or facts.node
    codes = ", ".join(map(str, incident.xids))
    why = f"Xid {codes} on most GPUs of {node} at once: the node is at fault (NVSwitch, baseboard, power or driver), not each GPU"
    actions: list[RunbookInvocation] = []
    job = facts.job
    if job and facts.job_state != "restarting":
        if SWAP in runbooks:
            actions.append(RunbookInvocation(runbook=SWAP, params={"job": job, "node": node}))
            why += f"; swap it out of {job}'s gang for a warm spare and restart the job from its checkpoint"
        else:
            why += f"; restart {job} from its checkpoint (no {SWAP} runbook: the scheduler decides)"
            actions += _restart(job, Facts(node=node))
    if ESCALATE in runbooks:
        summary = f"node-wide fault on {node}: {why}"
        params: dict[str, object] = {"node": node, "summary": summary}
        params["evidence"] = list(incident.root_cause.evidence[:10]) if incident.root_cause else []
        actions.append(RunbookInvocation(runbook=ESCALATE, params=params))
        why += "; one hardware ticket for the node"
    later = [RunbookInvocation(runbook="drain-and-reboot-node", params={"node": node})]
    why += "; drain and reboot it once it is out of work (queued)"
    return Plan(planner=planner, disposition="escalate", rationale=why, actions=actions, deferred=later)


def _shared_part(incident: Incident, planner: str) -> Plan:
    label, part = LABELS[incident.kind], incident.entity
    jobs = ", ".join(incident.affected_jobs[:8]) or "several nodes"
    why = (
        f"{label} {part} is what {jobs} share ({len(incident.affected_nodes)} nodes implicated): mark it "
        f"suspect, keep the healthy nodes under it in service (isolating them would not help), and "
        f"escalate to {OWNERS[incident.kind]}"
    )
    return Plan(planner=planner, disposition="escalate", rationale=why)
