"""Which planner decides, and who writes the summaries: configuration, not code.

| mode | decides | summaries |
|---|---|---|
| ``rules`` | the rules planner | template |
| ``explain`` | the rules planner | Claude |
| ``hybrid`` | rules for the signatures they know; Claude for the long tail | Claude |
| ``claude`` | Claude, for every incident | Claude |

Claude is off when there is no API key: every mode then means rules and template. Claude, where it
decides, falls back to the rules on any failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from anthropic import AsyncAnthropic
from pydantic import BaseModel, Field, SecretStr

from agents.claude import ClaudeLimits, ClaudePlanner, make_client
from agents.claude.answer import MIN_CONFIDENCE_TO_ACT
from agents.claude.toolbox import InvestigationTools
from agents.facts import Facts
from agents.planner import SYMPATHETIC_ONLY, Planner, RulesPlanner, xid_info
from agents.summaries import ClaudeSummarizer, Summarizer, TemplateSummarizer
from events.incident import Incident, Plan, PlanNote
from runbooks.library import RunbookLibrary
from skills.catalog import resolve_platform_action

PlannerMode = Literal["rules", "explain", "hybrid", "claude"]


class PlannerConfig(BaseModel):
    """What the composition root reads from settings to choose the planner."""

    mode: PlannerMode = "hybrid"
    api_key: SecretStr | None = None
    base_url: str | None = None
    model: str = "claude-sonnet-4-6"
    limits: ClaudeLimits = Field(default_factory=ClaudeLimits)
    min_confidence: float = Field(default=MIN_CONFIDENCE_TO_ACT, ge=0, le=1)


@dataclass
class PlannerChoice:
    planner: Planner
    summarizer: Summarizer
    client: AsyncAnthropic | None
    """Close it when the platform stops (None when Claude is off)."""
    description: str


def select_planner(
    config: PlannerConfig, *, tools: InvestigationTools, library: RunbookLibrary
) -> PlannerChoice:
    """The planner and summarizer ``config`` asks for."""
    rules = RulesPlanner()
    key = config.api_key.get_secret_value() if config.api_key else ""
    if config.mode == "rules" or not key:
        why = "" if config.mode == "rules" else f" (mode {config.mode}, but no ANTHROPIC_API_KEY)"
        return PlannerChoice(rules, TemplateSummarizer(), None, f"rules, template summaries{why}")
    client = make_client(key, config.base_url)
    summarizer = ClaudeSummarizer(client, model=config.model, limits=config.limits)
    if config.mode == "explain":
        return PlannerChoice(rules, summarizer, client, f"rules; summaries by {config.model}")
    claude = ClaudePlanner(
        client,
        tools,
        library=library,
        model=config.model,
        limits=config.limits,
        fallback=rules,
        min_confidence=config.min_confidence,
    )
    if config.mode == "claude":
        return PlannerChoice(
            claude, summarizer, client, f"{config.model} for every incident, rules as fallback"
        )
    return PlannerChoice(
        HybridPlanner(rules, claude),
        summarizer,
        client,
        f"rules for known signatures, {config.model} for the rest",
    )


class HybridPlanner:
    """Rules for the faults they know; Claude for the long tail (unknown or unmapped codes,
    conflicting signals), where the rules would only hand the incident to a person."""

    name = "hybrid"

    def __init__(self, rules: Planner, claude: Planner) -> None:
        self.rules = rules
        self.claude = claude

    async def plan(self, incident: Incident, facts: Facts) -> Plan:
        ruled = await self.rules.plan(incident, facts)
        why = long_tail(incident, ruled)
        if why is None:
            return ruled
        plan = await self.claude.plan(incident, facts)
        return plan.model_copy(
            update={"notes": [PlanNote(what="claude investigates", detail=why), *plan.notes]}
        )


def long_tail(incident: Incident, ruled: Plan) -> str | None:
    """Why this incident is beyond what the rules know, or None when they know it."""
    if ruled.disposition == "escalate":
        return f"the rules would hand it to a person: {ruled.rationale}"
    if incident.kind != "xid":
        return None
    causes = [x for x in incident.xids if x not in SYMPATHETIC_ONLY]
    readings = {
        (info.level, resolve_platform_action(info, incident.recovery_action))
        for info in (xid_info(code) for code in causes)
    }
    if len(readings) > 1:
        listed = ", ".join(map(str, causes))
        return f"Xids {listed} on one incident read differently (level or action); the rules take the first"
    return None
