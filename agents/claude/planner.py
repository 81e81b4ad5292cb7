"""The Claude planner: the ``Planner`` protocol over an investigation, with the rules as the floor.

Whatever goes wrong — no answer, a refusal, a malformed reply, a time-out, a limit, an answer that
names an unknown runbook or reaches outside the incident — the fallback planner (the rules)
decides, and the plan's notes say why, so the incident's timeline does too.
"""

from __future__ import annotations

import asyncio
import logging

from anthropic import AsyncAnthropic

from agents.claude.answer import MIN_CONFIDENCE_TO_ACT, AnswerRejected, IncidentScope, plan_from_answer
from agents.claude.limits import ClaudeLimits, Meter
from agents.claude.loop import Investigation, Outcome
from agents.claude.prompt import DataFence, incident_brief, system_prompt
from agents.claude.toolbox import InvestigationTools, Toolbox
from agents.facts import Facts
from agents.planner import Planner, RulesPlanner
from events.incident import Incident, Plan, PlanNote
from runbooks.library import RunbookLibrary
from skills.skill_files import Skill, load_skills

log = logging.getLogger(__name__)

NOTE_FOR_STEP = {"read": "claude read", "refused": "claude tool call refused"}


class ClaudePlanner:
    """Investigates an incident with Claude over the read-only MCP tools and proposes runbooks."""

    name = "claude"

    def __init__(
        self,
        client: AsyncAnthropic,
        tools: InvestigationTools,
        *,
        library: RunbookLibrary,
        model: str,
        limits: ClaudeLimits | None = None,
        fallback: Planner | None = None,
        skills: dict[str, Skill] | None = None,
        min_confidence: float = MIN_CONFIDENCE_TO_ACT,
        max_concurrent: int = 4,
    ) -> None:
        self.client = client
        self.tools = tools
        self.library = library
        self.model = model
        self.limits = limits or ClaudeLimits()
        self.fallback = fallback or RulesPlanner()
        self.skills = load_skills() if skills is None else skills
        self.min_confidence = min_confidence
        # Many incidents at once (a switch failing under a dozen nodes) should not mean a dozen
        # concurrent investigations; waiting for a slot counts against the wall-clock limit.
        self._slots = asyncio.Semaphore(max_concurrent)

    async def plan(self, incident: Incident, facts: Facts) -> Plan:
        plan, _ = await self.decide(incident, facts)
        return plan

    async def decide(self, incident: Incident, facts: Facts) -> tuple[Plan, Outcome]:
        """The plan, and the investigation behind it (for benchmarks and transcripts)."""
        outcome = await self.investigate(incident, facts)
        notes = transcript_notes(outcome)
        if outcome.answer is not None:
            try:
                plan = plan_from_answer(
                    outcome.answer,
                    library=self.library,
                    scope=IncidentScope(incident, facts),
                    planner=self.name,
                    min_confidence=self.min_confidence,
                )
            except AnswerRejected as exc:
                why = f"its answer was refused: {exc}"
            else:
                return plan.model_copy(update={"notes": [*notes, *plan.notes]}), outcome
        else:
            why = outcome.failure or "no answer"
        log.warning("incident %s: Claude planner fell back to %s: %s", incident.id, self.fallback.name, why)
        ruled = await self.fallback.plan(incident, facts)
        fell_back = PlanNote(what=f"claude planner fell back to {self.fallback.name}", detail=why)
        return ruled.model_copy(update={"notes": [*notes, fell_back, *ruled.notes]}), outcome

    async def investigate(self, incident: Incident, facts: Facts) -> Outcome:
        """Run one investigation within the limits; never raises for the model's or the API's faults."""
        meter = Meter(self.limits, self.model)
        fence = DataFence()
        investigation: Investigation | None = None
        try:
            async with asyncio.timeout(self.limits.max_wall_s):
                async with self._slots:
                    toolbox = await Toolbox.load(self.tools, self.skills)
                    investigation = Investigation(
                        client=self.client,
                        model=self.model,
                        system=system_prompt(self.library, self.skills, incident.kind),
                        toolbox=toolbox,
                        tools=self.tools,
                        fence=fence,
                        meter=meter,
                    )
                    return await investigation.run(incident_brief(incident, facts, fence))
        except TimeoutError:
            why = f"wall-clock limit reached ({self.limits.max_wall_s:g} s)"
        except Exception as exc:  # the MCP tool list could not be read, or a bug: never block triage
            log.exception("incident %s: Claude investigation failed", incident.id)
            why = f"investigation failed: {type(exc).__name__}: {exc}"[:500]
        if investigation is not None:
            return investigation.stop(why)
        return Outcome(failure=why, usage=meter.usage, steps=meter.steps, wall_s=meter.elapsed_s)


def transcript_notes(outcome: Outcome) -> list[PlanNote]:
    """What the incident's timeline shows of an investigation: each read, each refusal, the spend."""
    notes = [
        PlanNote(what=NOTE_FOR_STEP[s.kind], detail=s.detail)
        for s in outcome.transcript
        if s.kind in NOTE_FOR_STEP
    ]
    u = outcome.usage
    notes.append(
        PlanNote(
            what="claude investigation",
            detail=f"{outcome.steps} model call(s), {u.tokens:,} tokens, ${u.cost_usd:.4f}, {outcome.wall_s:.1f} s",
        )
    )
    return notes
