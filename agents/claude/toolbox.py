"""The tools the model may call, and the check before each call runs.

Tool schemas come from the MCP server's ``list_tools``. Only tools whose annotations say read-only
are offered, and a call of any other name is refused here, before it reaches the MCP client — the
model cannot change the fleet from the loop, whatever it was told. Two local tools complete the
set: ``read_skill`` (a SKILL.md by name) and ``submit_triage`` (the final answer).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from agents.claude.answer import answer_tool_schema
from agents.claude.prompt import ANSWER_TOOL, SKILL_TOOL, DataFence
from contracts.client import ToolResult, ToolSpec
from skills.skill_files import Skill


class InvestigationTools(Protocol):
    """What the loop needs of the agent's MCP client (``contracts.client.McpToolClient`` fits)."""

    async def call(self, tool: str, arguments: dict[str, Any]) -> ToolResult: ...

    async def tool_specs(self) -> list[ToolSpec]: ...


@dataclass(frozen=True)
class Refusal:
    """A tool call the loop would not make, and what the model is told."""

    tool: str
    reason: str


class Toolbox:
    def __init__(self, specs: list[ToolSpec], skills: dict[str, Skill]) -> None:
        self.read_only = {s.name: s for s in specs if s.read_only and s.name not in (ANSWER_TOOL, SKILL_TOOL)}
        self.mutating = {s.name for s in specs if not s.read_only}
        self.skills = skills

    @classmethod
    async def load(cls, tools: InvestigationTools, skills: dict[str, Skill]) -> Toolbox:
        return cls(await tools.tool_specs(), skills)

    def definitions(self) -> list[dict[str, Any]]:
        """The ``tools`` parameter of a Messages API call."""
        offered: list[dict[str, Any]] = [
            {"name": s.name, "description": s.description or s.name, "input_schema": s.input_schema}
            for s in self.read_only.values()
        ]
        if self.skills:
            offered.append(
                {
                    "name": SKILL_TOOL,
                    "description": "Load one diagnosis skill (a SKILL.md) by name.",
                    "input_schema": {
                        "type": "object",
                        "properties": {"name": {"type": "string", "enum": sorted(self.skills)}},
                        "required": ["name"],
                    },
                }
            )
        offered.append(
            {
                "name": ANSWER_TOOL,
                "description": (
                    "Submit the diagnosis and plan; call exactly once, at the end. The runbooks run "
                    "afterwards through the policy gate."
                ),
                "input_schema": answer_tool_schema(),
            }
        )
        return offered

    def check(self, name: str) -> Refusal | None:
        """None when the loop may run this call; else why not."""
        if name in self.read_only or name == SKILL_TOOL:
            return None
        if name in self.mutating:
            return Refusal(
                name,
                f"{name} changes the cluster; tools that change anything are not callable from the "
                "investigation. Propose a runbook in submit_triage instead; the policy gate checks it.",
            )
        return Refusal(name, f"there is no read-only tool named {name!r}")

    async def run(
        self,
        tools: InvestigationTools,
        name: str,
        arguments: dict[str, Any],
        fence: DataFence,
        max_chars: int,
    ) -> tuple[bool, str]:
        """Run an allowed call: (ok, the fenced result for the model)."""
        if name == SKILL_TOOL:
            skill = self.skills.get(str(arguments.get("name", "")))
            if skill is None:
                return False, f"no skill {arguments.get('name')!r}; known: {', '.join(sorted(self.skills))}"
            # Our own files, not untrusted data: no fence.
            return True, skill.body
        result = await tools.call(name, arguments)
        content: Any = result.structured if result.structured is not None else result.text
        shown = json.dumps(content, default=str)
        if len(shown) > max_chars:
            content = shown[:max_chars] + f" ... [cut: {len(shown) - max_chars} more characters]"
        return result.ok, fence.wrap(f"tool {name}", content)
