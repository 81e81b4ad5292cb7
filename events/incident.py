"""The incident contract: what the agents write to KV ``incidents`` and publish on
``gpu.incidents.<cluster>.<id>``, and what the MCP incident tools return."""

from __future__ import annotations

import bisect
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from events.models import utcnow

IncidentStatus = Literal[
    "open", "mitigating", "awaiting_approval", "mitigated", "escalated", "resolved", "suppressed"
]
Severity = Literal["info", "warning", "critical"]
EntityType = Literal["gpu", "node", "switch", "link", "job", "application", "rack", "nvlink_domain"]
Decision = Literal["allow", "deny", "approval_required"]


class RootCause(BaseModel):
    entity_type: EntityType
    entity_id: str
    confidence: float = Field(ge=0, le=1)
    evidence: list[str] = Field(default_factory=list)


class RunbookInvocation(BaseModel):
    runbook: str
    params: dict[str, Any] = Field(default_factory=dict)


class PlanNote(BaseModel):
    """A step on the planner's way to its plan (a tool it read, a request it refused, why it fell
    back), written to the incident's timeline."""

    what: str
    detail: str = ""


class Plan(BaseModel):
    planner: str
    disposition: Literal["mitigate", "no_action", "escalate"] = Field(
        description="act with the runbooks; nothing to do (benign); or hand to a person"
    )
    rationale: str
    actions: list[RunbookInvocation] = Field(default_factory=list)
    notes: list[PlanNote] = Field(
        default_factory=list, description="how the planner got here, for the timeline"
    )
    root_cause: RootCause | None = Field(
        default=None, description="the planner's diagnosis of the root cause, when it made one"
    )
    deferred: list[RunbookInvocation] = Field(
        default_factory=list,
        description="the repair the catalog calls for, queued with the incident: it runs once the GPU "
        "is idle or the node drained (never by interrupting a healthy job)",
    )


class ActionRecord(BaseModel):
    """One tool call made for the incident, with its policy decision and result."""

    run_id: str
    step: str
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    decision: Decision | None = None
    reasons: list[str] = Field(default_factory=list)
    ok: bool
    result: Any = None
    error: str | None = None
    time: datetime = Field(default_factory=utcnow)


class ApprovalRef(BaseModel):
    """An action of the incident that waits for (or waited for) a person's approval."""

    id: str = Field(description="the approval id: `aiops approve <id>` or approve_action")
    action: str
    target: str
    summary: str = Field(description="what would be done and why it needs a person")
    run_id: str
    step: str
    requested_at: datetime | None = None
    expires_at: datetime | None = None


class TimelineEntry(BaseModel):
    time: datetime = Field(default_factory=utcnow)
    what: str
    detail: str = ""


class Incident(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    cluster: str
    kind: str
    title: str = ""
    severity: Severity = "warning"
    status: IncidentStatus = "open"
    opened_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    root_cause: RootCause | None = None
    entity: str = Field(default="", description="what the incident is about, e.g. '<node>/<pci bus id>'")
    xids: list[int] = Field(default_factory=list, description="distinct Xid codes seen, in order")
    recovery_action: str | None = Field(default=None, description="what the driver's Xid 154 asked for")
    event_ids: list[str] = Field(default_factory=list, description="the first events grouped (capped)")
    event_count: int = 0
    affected_nodes: list[str] = Field(default_factory=list)
    affected_gpus: list[str] = Field(default_factory=list, description="'<node>/<gpu index>'")
    affected_jobs: list[str] = Field(default_factory=list)
    plan: Plan | None = None
    actions: list[ActionRecord] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    gpu_hours_lost: float = 0.0
    summary: str = Field(default="", description="plain-language summary for the people on call")
    pending_approvals: list[ApprovalRef] = Field(
        default_factory=list, description="actions parked until a person approves or rejects them"
    )
    held_by: Literal["breaker"] | None = Field(
        default=None, description="'breaker': the circuit breaker stopped its isolation; see safety_status"
    )
    observe_only: bool = Field(
        default=False, description="planned in observe-only mode: the actions are what it would have done"
    )
    attempt: int = Field(default=1, ge=1, description="mitigation attempt (a breaker reset retries)")
    findings: list[str] = Field(
        default_factory=list,
        description="what the signals established, e.g. 'ecc.dbe', 'ecc.remap_pending', 'hang.culprit', "
        "'throughput.straggler', 'shared.switch', 'suspected_bad_hardware'",
    )
    folded_into: str | None = Field(
        default=None,
        description="the incident that explains this one (a shared part; a job fault behind a cleanup Xid)",
    )
    folded: list[str] = Field(
        default_factory=list, description="incidents folded into this one, a shared part's (capped)"
    )
    acknowledged_by: str | None = Field(
        default=None, description="who on call took it (acknowledge_incident)"
    )
    acknowledged_at: datetime | None = None
    resolved_by: str | None = Field(default=None, description="who closed it (resolve_incident)")
    resolution: str | None = Field(default=None, description="how it ended, in the resolver's words")

    @model_validator(mode="after")
    def _one_clock(self) -> Incident:
        # An incident made without ``updated_at`` was last changed when it opened (not "now" on
        # some other clock: the twin's time and the wall clock differ by days).
        if "updated_at" not in self.model_fields_set:
            self.updated_at = self.opened_at
        return self

    def note(self, what: str, detail: str = "", at: datetime | None = None) -> None:
        """Add an entry to the timeline, in time order: a late event (its own time earlier than the
        last entry's) goes where it happened, so the timeline never runs backwards, and
        ``updated_at`` is the latest time on it (never earlier than before, never before
        ``opened_at``)."""
        entry = TimelineEntry(what=what, detail=detail, time=at or utcnow())
        where = bisect.bisect_right([e.time for e in self.timeline], entry.time)
        self.timeline.insert(where, entry)
        self.updated_at = max(self.updated_at, self.opened_at, self.timeline[-1].time)
