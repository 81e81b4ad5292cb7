"""Which planner decides is configuration; hybrid sends only the long tail to Claude."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from agents.claude import ClaudePlanner
from agents.facts import Facts
from agents.planner import RulesPlanner
from agents.planner_select import HybridPlanner, PlannerConfig, long_tail, select_planner
from agents.summaries import ClaudeSummarizer, TemplateSummarizer
from contracts.client import ToolResult, ToolSpec
from events.incident import Incident, Plan
from runbooks.library import RunbookLibrary

BUSY = Facts(node="node-003", gpu=3, job="train-01", job_state="stalled")


class NoTools:
    """Selection never calls the tools; the planners it builds do, later."""

    async def call(self, tool: str, arguments: dict[str, Any]) -> ToolResult:
        raise AssertionError("not expected")

    async def tool_specs(self) -> list[ToolSpec]:
        raise AssertionError("not expected")


class RecordingPlanner:
    name = "claude"

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def plan(self, incident: Incident, facts: Facts) -> Plan:
        self.asked.append(incident.id)
        return Plan(planner=self.name, disposition="escalate", rationale="looked into it")


def incident(*xids: int, kind: str = "xid") -> Incident:
    return Incident(id=f"inc-{'-'.join(map(str, xids))}", cluster="sim-a", kind=kind, xids=list(xids))


async def choose(mode: str, key: str | None):
    config = PlannerConfig(mode=mode, api_key=SecretStr(key) if key else None, base_url="http://127.0.0.1:9")  # type: ignore[arg-type]
    choice = select_planner(config, tools=NoTools(), library=RunbookLibrary.load())
    if choice.client is not None:
        await choice.client.close()
    return choice


@pytest.mark.parametrize("mode", ["rules", "explain", "hybrid", "claude"])
async def test_without_a_key_every_mode_means_rules_and_template_summaries(mode):
    choice = await choose(mode, None)
    assert isinstance(choice.planner, RulesPlanner) and isinstance(choice.summarizer, TemplateSummarizer)
    assert choice.client is None
    if mode != "rules":
        assert "no ANTHROPIC_API_KEY" in choice.description


@pytest.mark.parametrize(
    ("mode", "planner", "summarizer"),
    [
        ("rules", RulesPlanner, TemplateSummarizer),
        ("explain", RulesPlanner, ClaudeSummarizer),
        ("hybrid", HybridPlanner, ClaudeSummarizer),
        ("claude", ClaudePlanner, ClaudeSummarizer),
    ],
)
async def test_with_a_key_the_mode_picks_who_decides_and_who_summarizes(mode, planner, summarizer):
    choice = await choose(mode, "test-key")
    assert isinstance(choice.planner, planner) and isinstance(choice.summarizer, summarizer)


async def test_hybrid_leaves_a_known_signature_to_the_rules():
    claude = RecordingPlanner()
    plan = await HybridPlanner(RulesPlanner(), claude).plan(incident(79, 45), BUSY)
    assert plan.planner == "rules" and [a.runbook for a in plan.actions] == [
        "isolate-gpu",
        "restart-from-checkpoint",
    ]
    assert claude.asked == []


async def test_hybrid_asks_claude_about_a_code_the_rules_do_not_know():
    claude = RecordingPlanner()
    plan = await HybridPlanner(RulesPlanner(), claude).plan(incident(9999), BUSY)
    assert plan.planner == "claude" and claude.asked == ["inc-9999"]
    assert plan.notes[0].what == "claude investigates" and "hand it to a person" in plan.notes[0].detail


async def test_hybrid_asks_claude_when_the_xids_of_one_incident_read_differently():
    why = long_tail(incident(94, 48, 63), await RulesPlanner().plan(incident(94, 48, 63), BUSY))
    assert why is not None and "94, 48, 63" in why


async def test_hybrid_asks_claude_about_an_nvswitch_sxid():
    claude = RecordingPlanner()
    await HybridPlanner(RulesPlanner(), claude).plan(incident(12, kind="sxid"), BUSY)
    assert claude.asked == ["inc-12"]
