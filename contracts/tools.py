"""What the MCP tools return: backend-neutral views of nodes, GPUs, jobs and actions.

Every backend (the fleet twin, Kubernetes) answers in these shapes, so a tool never knows which one
it talks to. Field descriptions end up in the tools' output schemas, which models read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from events.incident import Decision
from events.repairs import Repair

GpuHealth = Literal["healthy", "fallen_off_bus", "error", "unknown"]
NodeState = Literal["ready", "not_ready", "rebooting", "unknown"]
JobState = Literal["running", "stalled", "restarting", "pending", "failed", "completed", "unknown"]


class GpuView(BaseModel):
    index: int = Field(description="GPU index on the node (nvidia-smi order)")
    uuid: str
    pci_bus_id: str = Field(description="normalised, e.g. 0000:18:00.0")
    health: GpuHealth
    isolated: bool = Field(description="taken out of service: no new work is scheduled on it")
    isolation_reason: str | None = None
    last_xid: int | None = None


class NodeSummary(BaseModel):
    name: str
    state: NodeState
    rack: str
    leaf_switch: str = Field(description="InfiniBand leaf switch the node hangs off")
    cordoned: bool
    cordon_owner: str | None = Field(default=None, description="who cordoned it; only they may undo it")
    spare: bool = Field(description="a warm spare in the pool, not running jobs")
    gpus_total: int
    gpus_healthy: int
    gpus_isolated: int
    jobs: list[str] = Field(default_factory=list)


class NodeDetail(NodeSummary):
    labels: dict[str, str] = Field(default_factory=dict)
    gpus: list[GpuView]


NodeFilter = Literal["any", "ready", "not_ready", "cordoned", "unhealthy", "spare"]


class NodeQuery(BaseModel):
    """Which nodes a listing wants; backends push what they can down (a Kubernetes label selector)."""

    state: NodeFilter = "any"
    rack: str | None = None
    leaf_switch: str | None = None
    label: str | None = Field(default=None, description="'key' or 'key=value'")

    def admits(self, node: NodeSummary, labels: dict[str, str]) -> bool:
        if self.rack and node.rack != self.rack:
            return False
        if self.leaf_switch and node.leaf_switch != self.leaf_switch:
            return False
        if self.label:
            key, _, value = self.label.partition("=")
            if key not in labels or (value and labels[key] != value):
                return False
        match self.state:
            case "any":
                return True
            case "ready":
                return node.state == "ready" and not node.cordoned
            case "not_ready":
                return node.state != "ready"
            case "cordoned":
                return node.cordoned
            case "unhealthy":
                return node.gpus_healthy < node.gpus_total or node.gpus_isolated > 0
            case "spare":
                return node.spare


class NodePage(BaseModel):
    nodes: list[NodeSummary]
    total: int = Field(description="nodes matching the filters, over all pages")
    next_cursor: str | None = Field(default=None, description="pass as `cursor` for the next page")


class JobView(BaseModel):
    name: str
    state: JobState
    nodes: list[str]
    gpus: int
    step: int
    step_time_s: float
    checkpoint_interval_s: float
    last_checkpoint_at: datetime | None
    last_checkpoint_step: int
    restarts: int
    gpu_hours_lost: float
    baseline_step_s: float | None = Field(default=None, description="its step time on a healthy gang")


class JobForGpu(BaseModel):
    node: str
    gpu: int
    job: JobView | None = Field(description="the job whose gang uses this GPU, or null when idle")


class CheckpointView(BaseModel):
    step: int
    at: datetime | None = Field(default=None, description="when its write finished, when known")


class CheckpointStatus(BaseModel):
    job: str
    state: JobState
    has_checkpoint: bool
    last_checkpoint_at: datetime | None
    last_checkpoint_step: int
    current_step: int
    checkpoint_age_s: float | None = Field(description="seconds since the last checkpoint")
    checkpoint_interval_s: float
    gpus: int
    gpu_hours_at_risk: float = Field(description="GPU-hours of progress a restart now would discard")
    checkpoints: list[CheckpointView] = Field(
        default_factory=list,
        description="the durable checkpoints kept, oldest first: restart_from_checkpoint(at_or_before_step=N) "
        "restores the newest with step <= N (one written before a corruption began)",
    )


class ActionChange(BaseModel):
    """What a backend did for a mutation."""

    changed: bool = Field(description="false when the target was already in the requested state")
    detail: str
    data: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


class PolicyView(BaseModel):
    decision: Decision
    reasons: list[str] = Field(default_factory=list)
    policies: list[str] = Field(default_factory=list)


class ActionOutcome(BaseModel):
    """The result of every mutating tool."""

    action: str
    target: str
    dry_run: bool
    changed: bool
    detail: str
    policy: PolicyView
    idempotency_key: str | None = None
    replayed: bool = Field(default=False, description="true when an earlier call with the same key answered")
    data: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


class FleetContext(BaseModel):
    """Fleet state the policy gate weighs a mutation against."""

    now: datetime
    isolations_last_hour: int
    cluster_nodes: int
    nodes_out_of_service: int


# -- remediation: spares, job progress, service status (tools/remediation.py) ----------------------

PLATFORM_OWNER = "gpu-aiops"
"""Cordons this platform sets carry the owner ``gpu-aiops/<principal>``; only those may it undo."""


def platform_owner(actor: str) -> str:
    return f"{PLATFORM_OWNER}/{actor}"


def owned_by_platform(owner: str | None) -> bool:
    return bool(owner) and str(owner).startswith(f"{PLATFORM_OWNER}/")


class SpareView(BaseModel):
    name: str
    rack: str
    leaf_switch: str
    fit: bool = Field(description="ready, uncordoned, every GPU usable: could take a gang member now")
    why_unfit: str | None = None


class SparePool(BaseModel):
    """The warm spare pool and, when asked for a job and node, the spare a swap would take."""

    spares: list[SpareView]
    fit: int = Field(description="spares that could take a gang member now")
    minimum: int = Field(default=0, description="spares the operators keep in reserve (policy)")
    above_minimum: int = Field(default=0, description="fit spares a swap may take without approval")
    candidate: str | None = Field(default=None, description="the spare a swap of `node` in `job` would take")
    candidate_why: str | None = None


class JobProgress(BaseModel):
    """Whether a job trains, and at which speed against its baseline."""

    job: str
    state: JobState
    step: int
    nodes: list[str]
    restarts: int
    baseline_step_s: float = Field(description="the job's step time on a healthy gang")
    observed_step_s: float = Field(description="its step time on the current gang")
    slowdown: float = Field(description="observed / baseline; 1.0 = full speed")
    at_baseline: bool = Field(description="observed step time within 10% of the baseline")
    resumed: bool = Field(description="running, at its baseline step time")
    resumes_at: datetime | None = Field(default=None, description="when a restart in progress ends")


class ServiceStatus(BaseModel):
    """Whether a node is in service, and if not, whether this platform may put it back."""

    node: str
    state: NodeState
    ready: bool
    all_gpus_healthy: bool
    unhealthy_gpus: list[int] = Field(default_factory=list)
    isolated_gpus: list[int] = Field(default_factory=list)
    cordoned: bool
    cordon_owner: str | None = None
    cordoned_by_platform: bool = Field(description="the cordon is this platform's, so it may lift it")
    maintenance: str | None = Field(default=None, description="a reset or reboot in progress")
    jobs: list[str] = Field(default_factory=list)
    spare: bool
    in_service: bool = Field(description="ready, uncordoned, every GPU healthy and not isolated")
    can_return: bool = Field(description="repaired, and only this platform holds it out of service")
    why_not: list[str] = Field(default_factory=list, description="why it cannot return yet")


class RepairList(BaseModel):
    """Deferred repairs (a GPU reset or node reboot a plan queued for when the node is idle), oldest
    first: what is queued and why it waits, what runs, and where each repaired node went."""

    repairs: list[Repair]


# -- active diagnostics (tools/diagnostics.py) --------------------------------------------------------

DiagnosticLevel = Literal[1, 2, 3, 4]
"""``dcgmi diag -r``: 1 quick deployment checks (seconds), 2 medium (~2 min), 3 long hardware
diagnostics (~15 min; the GEMM ``diagnostic`` plugin catches wrong results), 4 extended (longer)."""


class GpuDiagnosisView(BaseModel):
    gpu: int = Field(description="GPU index on the node")
    passed: bool
    failed_tests: list[str] = Field(default_factory=list, description="DCGM plugins that failed on it")


class DiagnosticsReport(BaseModel):
    """The latest DCGM diagnostics run on a node: running, or each GPU's verdict."""

    node: str
    state: Literal["none", "running", "passed", "failed"] = Field(
        description="none: never run; running: not finished; passed / failed: every GPU's verdict is in"
    )
    level: int | None = None
    tests: list[str] = Field(default_factory=list, description="the DCGM plugins of the level")
    started_at: datetime | None = None
    finishes_at: datetime | None = None
    duration_s: float | None = None
    gpus: list[GpuDiagnosisView] = Field(default_factory=list, description="filled once finished")
    failing_gpus: list[int] = Field(default_factory=list, description="GPUs that failed a test")
