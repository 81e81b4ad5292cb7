"""Planners: from an incident and the facts around it to a plan of runbooks.

The rules planner is deterministic and always available; it reads the Xid catalog in ``skills/``
and never needs a network. Other planners (Claude) sit behind the same ``Planner`` protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from agents.facts import Facts
from events.incident import Incident, Plan, RunbookInvocation, Severity
from skills.catalog import XidInfo, load_catalog

SYMPATHETIC_ONLY = frozenset({45})


@dataclass(frozen=True)
class XidSummary:
    mnemonic: str
    meaning: str
    severity: Severity


def describe_xid(code: int) -> XidSummary:
    info = load_catalog().info_or_unknown(code)
    severity: Severity = {"hardware": "critical", "application": "warning"}.get(info.level, "info")  # type: ignore[assignment]
    return XidSummary(info.mnemonic, info.meaning, severity)


class Planner(Protocol):
    name: str

    async def plan(self, incident: Incident, facts: Facts) -> Plan: ...


def governing_xid(incident: Incident) -> XidInfo:
    """The Xid that decides the plan: the first one that is not merely sympathetic."""
    catalog = load_catalog()
    causes = [x for x in incident.xids if x not in SYMPATHETIC_ONLY] or incident.xids
    return catalog.info_or_unknown(causes[0])


class RulesPlanner:
    name = "rules"

    async def plan(self, incident: Incident, facts: Facts) -> Plan:
        info = governing_xid(incident)
        label = f"Xid {info.code} ({info.mnemonic})"
        action = info.platform_action
        restart = (
            [RunbookInvocation(runbook="restart-from-checkpoint", params={"job": facts.job})]
            if facts.job and facts.job_state not in ("restarting", "running")
            else []
        )
        if action == "isolate_gpu_restart_job":
            if facts.gpu is None:
                return self._escalate(f"{label} needs the GPU isolated, but its index on {facts.node} is unknown")
            isolate = RunbookInvocation(
                runbook="isolate-gpu",
                params={"node": facts.node, "gpu": facts.gpu, "reason": f"{label}: {info.meaning}"},
            )
            why = f"{label} is a hardware fault: isolate the GPU"
            why += f" and restart job {facts.job} from its checkpoint" if restart else " (no job was using it)"
            return Plan(planner=self.name, disposition="mitigate", rationale=why, actions=[isolate, *restart])
        if action == "restart_job":
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
        if action == "none":
            return Plan(
                planner=self.name,
                disposition="no_action",
                rationale=f"{label} is {info.level}: {info.recommended_action}",
            )
        return self._escalate(f"{label} calls for '{action}' ({info.recommended_action}); no automated runbook yet")

    def _escalate(self, why: str) -> Plan:
        return Plan(planner=self.name, disposition="escalate", rationale=why)
