"""Planners: from an incident and the facts around it to a plan of runbooks.

The rules planner is deterministic and always available; it reads the Xid catalog in ``skills/``
and never needs a network. Other planners (Claude) sit behind the same ``Planner`` protocol.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

from agents.facts import Facts
from agents.fault_rules import family_plan, suspected_bad_hardware
from events.incident import Incident, Plan, RunbookInvocation, Severity
from runbooks.library import RunbookLibrary
from skills.catalog import PlatformAction, XidInfo, XidLevel, load_catalog, resolve_platform_action, sxid_info

SYMPATHETIC_ONLY = frozenset({45})

# Catalog actions whose first step is to contain the fault: stop new work landing on the GPU and
# get the job going again elsewhere. The repair itself (reset, reboot, diagnostics) follows.
CONTAIN_GPU = frozenset(
    {
        PlatformAction.REBOOT_NODE,
        PlatformAction.RESET_GPU,
        PlatformAction.DRAIN_RESET_GPU,
        PlatformAction.DRAIN_GPU,
        PlatformAction.RUN_DIAGNOSTICS,
    }
)
_SEVERITY: dict[XidLevel, Severity] = {
    XidLevel.HARDWARE: "critical",
    XidLevel.APPLICATION: "warning",
    XidLevel.INFORMATIONAL: "info",
}


@dataclass(frozen=True)
class XidSummary:
    mnemonic: str
    meaning: str
    severity: Severity


def xid_info(code: int, *, sxid: bool = False) -> XidInfo:
    return sxid_info(code) if sxid else load_catalog().info_or_unknown(code)


def describe_xid(code: int, *, sxid: bool = False) -> XidSummary:
    info = xid_info(code, sxid=sxid)
    return XidSummary(info.mnemonic, info.meaning, _SEVERITY.get(info.level, "warning"))


class Planner(Protocol):
    name: str

    async def plan(self, incident: Incident, facts: Facts) -> Plan: ...


def governing_xid(incident: Incident) -> XidInfo:
    """The Xid that decides the plan: the first one that is not merely sympathetic."""
    causes = [x for x in incident.xids if x not in SYMPATHETIC_ONLY] or incident.xids
    return xid_info(causes[0], sxid=incident.kind == "sxid")


class RulesPlanner:
    name = "rules"

    def __init__(self, runbooks: Collection[str] | None = None) -> None:
        self._runbooks = runbooks

    @property
    def runbooks(self) -> Collection[str]:
        """Runbook names available (default: the bundled library), so rules use what exists."""
        if self._runbooks is None:
            self._runbooks = frozenset(RunbookLibrary.load().names())
        return self._runbooks

    async def plan(self, incident: Incident, facts: Facts) -> Plan:
        # ECC, hangs, slowdowns and shared parts have rules of their own (agents.fault_rules).
        plan = family_plan(incident, facts, self.runbooks, self.name)
        plan = plan or await self._xid_plan(incident, facts)
        return suspected_bad_hardware(plan, incident, facts, self.runbooks)

    async def _xid_plan(self, incident: Incident, facts: Facts) -> Plan:
        info = governing_xid(incident)
        label = f"{'SXid' if incident.kind == 'sxid' else 'Xid'} {info.code} ({info.mnemonic})"
        action = resolve_platform_action(info, incident.recovery_action)
        restart = (
            [RunbookInvocation(runbook="restart-from-checkpoint", params={"job": facts.job})]
            if facts.job and facts.job_state not in ("restarting", "running")
            else []
        )
        repeated = info.escalate_after.then if info.escalate_after else None
        if "suspected_bad_hardware" in incident.findings and repeated in CONTAIN_GPU:
            # The catalog's repetition rule tripped on this GPU (Xid 13 five times in a day points at
            # the GPU, not the code): its diagnostics need the GPU out of the job, so contain it.
            action = repeated
        elif info.level is XidLevel.APPLICATION and action is not PlatformAction.NONE:
            # Usually the workload's fault (k8s-device-plugin's list): never a hardware action on a
            # single occurrence; repetition on one GPU is what escalates it.
            action = PlatformAction.RESTART_JOB
        if action in CONTAIN_GPU:
            if facts.gpu is None:
                return self._escalate(
                    f"{label} needs the GPU isolated, but its index on {facts.node} is unknown"
                )
            isolate = RunbookInvocation(
                runbook="isolate-gpu",
                params={"node": facts.node, "gpu": facts.gpu, "reason": f"{label}: {info.meaning}"},
            )
            # With warm spares above the operators' reserve, swap one in explicitly (same leaf
            # switch first, verified at the baseline step time) instead of a plain restart.
            swap = bool(restart) and bool(facts.spares_above_minimum) and "swap-spare" in self.runbooks
            if swap:
                restart = [
                    RunbookInvocation(runbook="swap-spare", params={"job": facts.job, "node": facts.node})
                ]
            why = f"{label} is a hardware fault: isolate GPU {facts.gpu} on {facts.node}"
            why += (
                f", swap a warm spare in for {facts.node} and restart job {facts.job} from its checkpoint"
                if swap
                else f" and restart job {facts.job} from its checkpoint"
                if restart
                else " (no stalled job on it)"
            )
            later = self._repair(action, facts.node, facts.gpu)
            why += f"; the repair the catalog calls for ({action}) is queued for when the GPU is idle"
            return Plan(
                planner=self.name,
                disposition="mitigate",
                rationale=why,
                actions=[isolate, *restart],
                deferred=later,
            )
        if action is PlatformAction.TICKET:
            return self._ticket(label, info, facts, restart)
        if action is PlatformAction.RESTART_JOB:
            if restart:
                return Plan(
                    planner=self.name,
                    disposition="mitigate",
                    rationale=f"{label} is an application error: restart job {facts.job}; no hardware action",
                    actions=restart,
                )
            return Plan(
                planner=self.name,
                disposition="no_action",
                rationale=f"{label} is an application error and no stalled job needs a restart; no hardware action",
            )
        if action is PlatformAction.NONE and any(f.startswith("ecc.") for f in incident.findings):
            # An informational Xid (63: a row remap happened) with DCGM's counters beside it.
            ecc = family_plan(incident.model_copy(update={"kind": "ecc"}), facts, self.runbooks, self.name)
            if ecc is not None:
                return ecc
        if action is PlatformAction.NONE:
            return Plan(
                planner=self.name,
                disposition="no_action",
                rationale=f"{label} is {info.level}: {info.recommended_action}",
            )
        return self._escalate(f"{label} calls for {action}: {info.recommended_action}")

    def _ticket(self, label: str, info: XidInfo, facts: Facts, restart: list[RunbookInvocation]) -> Plan:
        """NVIDIA says contact support: the GPU's state is unknown, so contain it (isolate it and
        restart its job elsewhere) and open the ticket (the ``escalate`` runbook)."""
        actions: list[RunbookInvocation] = []
        why = f"{label} calls for support ({info.recommended_action})"
        if facts.gpu is not None and "isolate-gpu" in self.runbooks:
            actions.append(
                RunbookInvocation(
                    runbook="isolate-gpu",
                    params={"node": facts.node, "gpu": facts.gpu, "reason": f"{label}: {info.meaning}"},
                )
            )
            actions += restart
            why += f": isolate GPU {facts.gpu} on {facts.node}" + (
                f" and restart job {facts.job} from its checkpoint" if restart else ""
            )
        if "escalate" in self.runbooks:
            params: dict[str, object] = {"node": facts.node, "summary": f"{label}: {info.meaning}"}
            if facts.gpu is not None:
                params["gpu"] = facts.gpu
            actions.append(RunbookInvocation(runbook="escalate", params=params))
            why += "; open a hardware ticket"
        return Plan(planner=self.name, disposition="escalate", rationale=why, actions=actions)

    def _repair(self, action: PlatformAction, node: str, gpu: int) -> list[RunbookInvocation]:
        """The catalog's repair, queued with the incident: a reset (which clears the error and
        applies pending remaps) or a reboot of the node; diagnostics stay with people."""
        if action is PlatformAction.REBOOT_NODE and "drain-and-reboot-node" in self.runbooks:
            return [RunbookInvocation(runbook="drain-and-reboot-node", params={"node": node})]
        if (
            action in (PlatformAction.RESET_GPU, PlatformAction.DRAIN_RESET_GPU)
            and "reset-gpu" in self.runbooks
        ):
            return [RunbookInvocation(runbook="reset-gpu", params={"node": node, "gpu": gpu})]
        return []

    def _escalate(self, why: str) -> Plan:
        return Plan(planner=self.name, disposition="escalate", rationale=why)
