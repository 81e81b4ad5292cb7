"""The scenario format (YAML): a fleet, a timeline of injected faults, and expectations.

Names are neutral: nothing in a scenario's node or job names hints at the answer. Injections are
calls of the fleet twin's fault API; ``kind`` picks the call and the remaining fields are its
arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator


class FleetChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preset: Literal["small"] = "small"
    seed: int = 0
    spare_nodes: int | None = None
    overrides: dict[str, Any] = Field(default_factory=dict, description="FleetSpec fields")


InjectionKind = Literal[
    "xid",
    "fall_off_three_line",
    "kernel_message",
    "ecc",
    "hang",
    "degrade_link",
    "throttle",
    "slow_workload",
    "lose_node",
    "fail_nic",
    "sdc",
]


# Per injection kind: the fields it needs and the ones it may have (the twin call's arguments).
ARGUMENTS: dict[str, tuple[set[str], set[str]]] = {
    "xid": ({"node", "gpu", "xid"}, {"pid", "process", "caused_by", "recovery_action"}),
    "fall_off_three_line": ({"node", "gpu"}, set()),
    "kernel_message": ({"node", "message"}, set()),
    "ecc": ({"node", "gpu", "ecc"}, {"count", "kernel_log"}),  # kernel_log: false = DCGM counters only
    "hang": ({"job"}, {"rank"}),
    "degrade_link": ({"leaf"}, {"factor"}),
    "throttle": ({"node", "gpu"}, {"factor"}),
    "slow_workload": ({"job"}, {"factor"}),
    "lose_node": ({"node"}, set()),
    "fail_nic": ({"node"}, set()),
    "sdc": ({"node", "gpu"}, {"mode", "transient"}),  # mode: nan | spike; transient: a one-off
}
SDC_MODES = ("nan", "spike")
ECC_KINDS = ("dbe", "sbe_burst", "remap_pending", "remap_failure", "retired_pages")


class Injection(BaseModel):
    """One fault at ``at_s`` simulated seconds after the warm-up; ``kind`` names the twin call
    (``evals.scenarios.runner.KINDS``) and the other fields are its arguments."""

    model_config = ConfigDict(extra="allow")

    at_s: float = Field(ge=0)
    kind: InjectionKind
    note: str = ""

    @model_validator(mode="after")
    def _arguments_fit(self) -> Injection:
        required, optional = ARGUMENTS[self.kind]
        given = set(self.arguments())
        if missing := required - given:
            raise ValueError(f"{self.kind} needs {', '.join(sorted(missing))}")
        if unknown := given - required - optional:
            raise ValueError(f"{self.kind} takes no {', '.join(sorted(unknown))}")
        ecc = self.arguments().get("ecc")
        if self.kind == "ecc" and ecc not in ECC_KINDS:
            raise ValueError(f"ecc must be one of {', '.join(ECC_KINDS)}, not {ecc!r}")
        mode = self.arguments().get("mode", "nan")
        if self.kind == "sdc" and mode not in SDC_MODES:
            raise ValueError(f"mode must be one of {', '.join(SDC_MODES)}, not {mode!r}")
        return self

    def arguments(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


IncidentKind = Literal[
    "xid", "sxid", "node", "ecc", "hang", "throughput", "numerics", "switch", "rack", "nvlink_domain"
]
IncidentStatus = Literal[
    "open", "mitigating", "awaiting_approval", "mitigated", "escalated", "resolved", "suppressed"
]


class ExpectedIncident(BaseModel):
    """One incident the platform must open (among those not folded into another), and how it ends."""

    model_config = ConfigDict(extra="forbid")

    kind: IncidentKind | None = None
    root_cause: str | None = Field(
        default=None,
        pattern=r"^(gpu|node|switch|rack|nvlink_domain|job|link|application):\S+$",
        description="'<entity type>:<entity id>', e.g. gpu:node-003/gpu3, node:node-010, switch:leaf-01",
    )
    status: list[IncidentStatus] = Field(default_factory=list, description="any of these final statuses")
    runbooks: list[str] | None = Field(default=None, description="exactly these runbooks, in order")
    findings: list[str] = Field(
        default_factory=list, description="findings the incident must carry, e.g. suspected_bad_hardware"
    )
    max_time_to_mitigate_s: float | None = Field(
        default=None, description="simulated seconds from the fault to mitigated (detection included)"
    )


class ForbiddenAction(BaseModel):
    """A mutation that must not happen: the tool, and optionally the argument values it must not have."""

    model_config = ConfigDict(extra="forbid")

    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)

    def matches(self, tool: str, arguments: dict[str, Any]) -> bool:
        return tool == self.tool and all(arguments.get(k) == v for k, v in self.arguments.items())


class RequiredAction(BaseModel):
    """A mutation that must happen (``within_s`` simulated seconds of the timeline's start, when
    given), optionally only after another one (``after``: "isolate before restart")."""

    model_config = ConfigDict(extra="forbid")

    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    within_s: float | None = Field(default=None, gt=0)
    after: ForbiddenAction | None = Field(default=None, description="an action that must come first")

    def matches(self, tool: str, arguments: dict[str, Any]) -> bool:
        return tool == self.tool and all(arguments.get(k) == v for k, v in self.arguments.items())


class ExpectedJob(BaseModel):
    """How a job ends: how many times it restarted, and which nodes its final gang holds or not."""

    model_config = ConfigDict(extra="forbid")

    restarts: int | None = Field(default=None, ge=0, description="exact number of restarts")
    max_restarts: int | None = Field(default=None, ge=0)
    excludes: list[str] = Field(default_factory=list, description="nodes the final gang must not hold")
    includes: list[str] = Field(default_factory=list, description="nodes the final gang must still hold")


class Expectations(BaseModel):
    """Incident counts are of the incidents an operator sees: those not folded into a shared-part one."""

    model_config = ConfigDict(extra="forbid")

    must: list[RequiredAction] = Field(default_factory=list, description="mutations that must happen")
    jobs: dict[str, ExpectedJob] = Field(default_factory=dict)

    incidents: list[ExpectedIncident] = Field(default_factory=list)
    incident_count: int | None = Field(default=None, description="exact number of incidents, when it matters")
    max_incidents: int | None = None
    forbidden: list[ForbiddenAction] = Field(default_factory=list)
    no_mutations: bool = Field(default=False, description="nothing at all may change")


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    family: Literal[
        "xid", "ecc", "hang", "throughput", "topology", "policy", "safety", "host", "network", "sdc"
    ]
    description: str
    fleet: FleetChoice = Field(default_factory=FleetChoice)
    settings: dict[str, Any] = Field(default_factory=dict, description="aiops Settings overrides")
    warmup_s: float = 2700.0
    detector_warmup_s: float = Field(
        default=120.0, ge=0, description="last part of the warm-up the detectors watch (baselines)"
    )
    tick_s: float = Field(default=5.0, gt=0)
    dcgm_scrape_s: float = Field(
        default=15.0, gt=0, description="simulated seconds between DCGM scrapes (a Prometheus-like cadence)"
    )
    run_for_s: float = Field(default=600.0, ge=0, description="simulated time after the last injection")
    timeline: list[Injection]
    expect: Expectations

    @model_validator(mode="after")
    def _warmups(self) -> Scenario:
        if self.detector_warmup_s > self.warmup_s:
            raise ValueError(f"detector_warmup_s {self.detector_warmup_s} exceeds warmup_s {self.warmup_s}")
        return self

    @classmethod
    def load(cls, path: Path) -> Scenario:
        return cls.model_validate(yaml.safe_load(path.read_text()))


LIBRARY = Path(__file__).parent / "library"


def load_library(folder: Path = LIBRARY) -> list[Scenario]:
    return [Scenario.load(p) for p in sorted(folder.glob("*.yaml"))]
