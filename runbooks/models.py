"""Runbooks as data: parameters, preconditions, steps, verification and rollback.

Every step is a call of an MCP tool; arguments are templates over the run's context
(``{{ params.node }}``, ``{{ saved.ckpt.job }}``): path look-ups only, never code.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Check(BaseModel):
    """A condition on a tool result: ``path`` into the structured result, then one comparison."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    path: str = Field(description="dotted path into the tool's structured result; '' = the whole result")
    equals: Any = None
    not_equals: Any = None
    in_: list[Any] | None = Field(default=None, alias="in")
    not_in: list[Any] | None = None
    is_null: bool | None = None
    contains: Any = None
    not_contains: Any = None
    message: str = Field(default="", description="why the check failed, for people (may hold templates)")

    @model_validator(mode="after")
    def _one_comparison(self) -> Check:
        set_ = [f for f in COMPARISONS if getattr(self, f) is not None]
        if len(set_) != 1:
            raise ValueError(
                f"a check needs exactly one of equals/not_equals/in/not_in/is_null/contains/not_contains, got {set_}"
            )
        return self


COMPARISONS = ("equals", "not_equals", "in_", "not_in", "is_null", "contains", "not_contains")


class Wait(BaseModel):
    """Repeat a read-only step until its ``require`` checks hold: for what takes time (a reset, a
    reboot, a job's restart). ``within_s`` and ``every_s`` are wall-clock seconds."""

    model_config = ConfigDict(extra="forbid")

    within_s: float = Field(gt=0, le=86_400)
    every_s: float = Field(default=1.0, gt=0, le=600)


class ToolStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    tool: str
    args: dict[str, Any] = Field(default_factory=dict)
    save_as: str | None = Field(default=None, description="keep the result under saved.<name>")
    require: list[Check] = Field(default_factory=list)
    timeout_s: float = Field(default=30.0, gt=0, le=3600)
    wait: Wait | None = Field(default=None, description="poll a read-only step until `require` holds")
    description: str = ""

    @model_validator(mode="after")
    def _wait_needs_a_condition(self) -> ToolStep:
        if self.wait is not None and not self.require:
            raise ValueError(
                f"step {self.id}: `wait` repeats the step until its `require` checks hold; add some"
            )
        return self


class Fallback(BaseModel):
    """The runbook to run when this one fails or its verification does not hold (not when the
    policy refuses it): e.g. a GPU reset that did not clear the error falls back to a reboot."""

    model_config = ConfigDict(extra="forbid")

    runbook: str
    params: dict[str, Any] = Field(default_factory=dict, description="templates over params, saved, context")


class ParamSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["string", "integer", "boolean", "list"] = "string"
    required: bool = True
    default: Any = None
    description: str = ""


class Runbook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    preconditions: list[ToolStep] = Field(default_factory=list)
    steps: list[ToolStep]
    verify: list[ToolStep] = Field(default_factory=list)
    rollback: list[ToolStep] = Field(default_factory=list)
    confirm: list[ToolStep] = Field(
        default_factory=list,
        description="read-only checks that need time to hold (a job training again at its baseline): "
        "they follow a succeeded run without holding it, and a failure hands the incident to people",
    )
    fallback: Fallback | None = None

    @model_validator(mode="after")
    def _unique_ids(self) -> Runbook:
        ids = [s.id for s in self.preconditions + self.steps + self.verify + self.rollback + self.confirm]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"step ids must be unique within a runbook: {dupes}")
        return self
