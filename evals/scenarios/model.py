"""The scenario format (YAML): a fleet, a timeline of injected faults, and expectations.

Names are neutral: nothing in a scenario's node or job names hints at the answer. Injections are
calls of the fleet twin's fault API; ``kind`` picks the call and the remaining fields are its
arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field


class FleetChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preset: Literal["small"] = "small"
    seed: int = 0
    spare_nodes: int | None = None
    overrides: dict[str, Any] = Field(default_factory=dict, description="FleetSpec fields")


class Injection(BaseModel):
    """One fault at ``at_s`` simulated seconds after the warm-up; ``kind`` names the twin call."""

    model_config = ConfigDict(extra="allow")

    at_s: float = Field(ge=0)
    kind: str
    note: str = ""

    def arguments(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ExpectedIncident(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str | None = None
    root_cause: str | None = Field(default=None, description="'<entity type>:<entity id>'")
    status: list[str] = Field(default_factory=list, description="any of these final statuses")
    runbooks: list[str] | None = Field(default=None, description="exactly these runbooks, in order")
    max_time_to_mitigate_s: float | None = None


class ForbiddenAction(BaseModel):
    """A mutation that must not happen: the tool, and optionally the argument values it must not have."""

    model_config = ConfigDict(extra="forbid")

    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)

    def matches(self, tool: str, arguments: dict[str, Any]) -> bool:
        return tool == self.tool and all(arguments.get(k) == v for k, v in self.arguments.items())


class Expectations(BaseModel):
    model_config = ConfigDict(extra="forbid")

    incidents: list[ExpectedIncident] = Field(default_factory=list)
    incident_count: int | None = Field(default=None, description="exact number of incidents, when it matters")
    max_incidents: int | None = None
    forbidden: list[ForbiddenAction] = Field(default_factory=list)
    no_mutations: bool = Field(default=False, description="nothing at all may change")


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    family: Literal["xid", "ecc", "hang", "throughput", "topology", "policy", "safety"]
    description: str
    fleet: FleetChoice = Field(default_factory=FleetChoice)
    settings: dict[str, Any] = Field(default_factory=dict, description="aiops Settings overrides")
    warmup_s: float = 2700.0
    tick_s: float = Field(default=5.0, gt=0)
    run_for_s: float = Field(default=600.0, ge=0, description="simulated time after the last injection")
    timeline: list[Injection]
    expect: Expectations

    @classmethod
    def load(cls, path: Path) -> Scenario:
        return cls.model_validate(yaml.safe_load(path.read_text()))


LIBRARY = Path(__file__).parent / "library"


def load_library(folder: Path = LIBRARY) -> list[Scenario]:
    return [Scenario.load(p) for p in sorted(folder.glob("*.yaml"))]
