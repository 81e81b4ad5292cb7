"""What the twin reports back: action results, isolation records and its event history."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from fleet.jobs import JobState, NodeReplacement

Scalar = str | int | float | bool | None
HistoryKind = Literal["fault", "action", "job"]


class ActionResult(BaseModel):
    """The outcome of an action: what changed, or why nothing did (repeating an action is a no-op)."""

    action: str
    target: str
    changed: bool = Field(description="false when the target was already in the requested state")
    detail: str
    time: datetime
    data: dict[str, Scalar] = Field(default_factory=dict)


class RestartResult(ActionResult):
    state: JobState = Field(description="restarting when the gang is placed, pending when it waits")
    resume_step: int = Field(description="the step the job resumes from (its last checkpoint)")
    discarded_checkpoints: list[int] = Field(
        default_factory=list, description="steps of newer checkpoints dropped by restoring an older one"
    )
    lost_steps: int = Field(description="steps taken since the checkpoint, discarded")
    lost_work_s: float = Field(description="running time since the checkpoint, discarded")
    replacements: list[NodeReplacement] = Field(default_factory=list)
    waiting_for: list[str] = Field(default_factory=list, description="why the gang cannot be placed yet")


class IsolationRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    time: datetime
    node: str
    gpu: int
    reason: str


class HistoryRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    time: datetime
    kind: HistoryKind
    text: str
