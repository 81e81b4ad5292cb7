"""Event contracts (pydantic). Every event on ``gpu.events.>`` validates against one of these.

Unknown extra fields are kept (``extra="allow"``); a missing or malformed required field fails
validation, and the caller sends the payload to the dead-letter subject with the reason
(``events.dead_letter``).

Every time is timezone-aware: a time without a zone (``2026-11-29T07:35:00``) fails validation
rather than being guessed, so nothing downstream ever compares a naive time with an aware one.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

from events.subjects import EventKind


def utcnow() -> datetime:
    return datetime.now(UTC)


def stable_id(*parts: object) -> str:
    """A deterministic id from content, so the same fact seen twice dedupes (``Nats-Msg-Id``)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return digest[:24]


class EventBase(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    event_id: str = Field(min_length=1)
    kind: EventKind
    time: AwareDatetime
    cluster: str = Field(min_length=1)
    source: str = Field(min_length=1, description="the detector that produced the event")
    node: str | None = None


class XidEvent(EventBase):
    """An Xid (or NVSwitch SXid) reported by the NVIDIA driver."""

    kind: Literal["xid"] = "xid"
    node: str = Field(min_length=1)
    gpu: int | None = Field(default=None, ge=0, description="index on the node, when the PCI id maps to one")
    pci_bus_id: str | None = None
    xid: int = Field(ge=0)
    pid: int | None = None
    process: str | None = None
    message: str = ""
    raw: str = ""
    # Decoded details; present only for the formats that carry them.
    sxid: bool = False
    caused_by_xid: int | None = None
    recovery_action: str | None = None
    link: int | None = None
    severity: str | None = None
    nvswitch: str | None = None
    subcomponent: str | None = None
    fell_off_bus_without_xid: bool = False


EccFinding = Literal[
    "dbe",
    "sbe_rate",
    "retired_pages_soft",
    "retired_pages_hard",
    "retired_pending",
    "remap_pending",
    "remap_pending_cleared",
    "remap_failure",
    "remap_uncorrectable",
    "remap_rows_exhausted",
    "thermal_recurring",
]
"""What an ECC event reports; DCGM's own limits are in ``events.detectors.dcgm``. ``thermal_recurring``
is not about memory: the DCGM detector's one non-ECC health finding (recurring thermal slowdown,
``events.detectors.thermal``), carried by the same event so it reaches triage as a finding."""


class EccEvent(EventBase):
    """ECC counters of one GPU when something in them changed that matters, or a recurring thermal
    slowdown (DCGM detector)."""

    kind: Literal["ecc"] = "ecc"
    node: str = Field(min_length=1)
    gpu: int = Field(ge=0)
    pci_bus_id: str | None = None
    uuid: str | None = None
    findings: list[EccFinding] = Field(default_factory=list, description="why this event was emitted")
    sbe_volatile: int = 0
    dbe_volatile: int = 0
    sbe_aggregate: int = 0
    dbe_aggregate: int = 0
    retired_sbe: int = 0
    retired_dbe: int = 0
    retired_pending: int = 0
    remap_correctable: int = 0
    remap_uncorrectable: int = 0
    remap_pending: int = 0
    remap_failure: int = 0
    clock_event_reasons: int = Field(
        default=0, description="DCGM_FI_DEV_CLOCKS_EVENT_REASONS at the scrape (a bitmask)"
    )
    reason: str = ""


class HangEvent(EventBase):
    """A job whose ranks stopped progressing; ``ranks``/``nodes`` are the ones that stopped first."""

    kind: Literal["hang"] = "hang"
    job: str = Field(min_length=1)
    ranks: list[int] = Field(default_factory=list)
    nodes: list[str] = Field(default_factory=list)
    last_step: int = 0
    stalled_for_s: float = Field(ge=0)
    gpus: list[str] = Field(
        default_factory=list, description="'<node>/<gpu index>' of the first-stalled ranks"
    )
    threshold_s: float = Field(default=0.0, ge=0, description="the job's hang threshold (from its step time)")
    ranks_total: int = Field(default=0, ge=0)
    how: str = Field(default="", description="how the first-stalled ranks were told apart")
    resumed: bool = Field(default=False, description="progress resumed: a later signal cancelling the hang")


class ThroughputEvent(EventBase):
    kind: Literal["throughput"] = "throughput"
    job: str = Field(min_length=1)
    baseline_step_s: float = Field(gt=0)
    observed_step_s: float = Field(gt=0)
    slowdown: float
    suspect_nodes: list[str] = Field(default_factory=list)
    suspect_ranks: list[int] = Field(default_factory=list)
    suspect_links: list[str] = Field(default_factory=list)
    suspect_switches: list[str] = Field(default_factory=list)
    signature: Literal["straggler", "network", "workload"] | None = Field(
        default=None,
        description="straggler: some ranks compute slower; network: collectives slower on every rank; "
        "workload: uniformly slower with neither",
    )
    nodes: list[str] = Field(default_factory=list, description="every node of the job")
    suspect_gpus: list[str] = Field(
        default_factory=list, description="'<node>/<gpu index>' of the suspect ranks, when known"
    )
    sustained_s: float = Field(default=0.0, ge=0)
    recovered: bool = Field(default=False, description="back at baseline: cancels an earlier slowdown")


NumericsSignature = Literal["nonfinite", "loss_spike", "grad_spike"]


class NumericsEvent(EventBase):
    """A job whose training numerics went wrong: the signature of silent data corruption.

    ``nonfinite``: loss or gradient norm became NaN/Inf; ``loss_spike`` / ``grad_spike``: a jump far
    outside the job's recent range (robust deviation over a window of its own beats). ``first_bad_step``
    is the first step showing it and ``last_good_step`` the last step before it, so a restart can take a
    checkpoint from before the corruption. ``suspect_ranks`` / ``suspect_gpus`` are set only when a
    rank-local value (its own gradient norm) singles ranks out; a reduced loss names no rank.
    """

    kind: Literal["numerics"] = "numerics"
    job: str = Field(min_length=1)
    signature: NumericsSignature
    first_bad_step: int = Field(ge=0)
    last_good_step: int | None = Field(default=None, ge=0)
    value: float | None = Field(default=None, description="the anomalous loss or gradient norm")
    baseline: float | None = Field(default=None, description="the job's recent typical value")
    nodes: list[str] = Field(default_factory=list, description="every node of the job")
    suspect_ranks: list[int] = Field(default_factory=list)
    suspect_gpus: list[str] = Field(
        default_factory=list, description="'<node>/<gpu index>' of the suspect ranks, when known"
    )
    reason: str = ""
    cleared: bool = Field(default=False, description="numerics back in range: cancels an earlier spike")

    model_config = ConfigDict(extra="allow", populate_by_name=True, ser_json_inf_nan="constants")


AnyEvent = XidEvent | EccEvent | HangEvent | ThroughputEvent | NumericsEvent
"""Any typed GPU event (``GpuEvent`` is the same union, discriminated on ``kind`` for parsing)."""
GpuEvent = Annotated[AnyEvent, Field(discriminator="kind")]
_GPU_EVENT: TypeAdapter[AnyEvent] = TypeAdapter(GpuEvent)


def parse_event(payload: bytes | str | dict[str, Any]) -> AnyEvent:
    """Validate a payload as one of the event kinds; raises ``pydantic.ValidationError``."""
    if isinstance(payload, dict):
        return _GPU_EVENT.validate_python(payload)
    return _GPU_EVENT.validate_json(payload)


def event_key(ev: AnyEvent) -> str:
    """The subject key of an event: the node for xid/ecc, the job for hang/throughput/numerics."""
    if isinstance(ev, HangEvent | ThroughputEvent | NumericsEvent):
        return ev.job
    return ev.node


class Heartbeat(BaseModel):
    """One progress beat of a training rank on ``gpu.heartbeat.<cluster>.<job>`` (core NATS).

    ``step_time_s`` is the mean wall time per step since the previous beat; ``compute_s`` and
    ``comm_s`` split it (time in the rank's own compute vs. in collectives, waiting included) when the
    loop measures them; ``collective_seq`` counts the collectives the rank has entered (as the
    PyTorch NCCL flight recorder does), which tells the rank a hang waits for. ``loss`` and
    ``grad_norm`` are the training numerics at ``step`` when the loop reports them: a non-finite value
    or a sudden jump is how silent data corruption shows itself (the numerics detector). On the wire a
    non-finite value is the JSON constant ``NaN`` / ``Infinity`` / ``-Infinity``; a string or a boolean
    is refused (``"NaN"`` is no measurement), and so is a non-finite timing.
    """

    model_config = ConfigDict(extra="allow", ser_json_inf_nan="constants")

    cluster: str = Field(min_length=1)
    job: str = Field(min_length=1)
    rank: int = Field(ge=0)
    node: str = Field(min_length=1)
    gpu: int | None = Field(default=None, ge=0)
    step: int = Field(ge=0)
    step_time_s: float = Field(ge=0, allow_inf_nan=False)
    time: AwareDatetime
    compute_s: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    comm_s: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    collective_seq: int | None = Field(default=None, ge=0)
    hang_after_s: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="the job's own hang threshold: no progress for this long while ranks still beat is a "
        "hang (unset = derived from its step time, at least the detector's floor)",
    )
    checkpoint_step: int | None = Field(
        default=None,
        ge=0,
        description="the step of the checkpoint the rank finished writing since its last beat",
    )
    checkpoint_write_s: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="how long that checkpoint's write blocked the rank (seconds)",
    )
    loss: float | None = Field(
        default=None,
        strict=True,
        description="the training loss at ``step`` (may be non-finite: that is the signal)",
    )
    grad_norm: float | None = Field(
        default=None,
        strict=True,
        description="the rank's gradient norm at ``step`` before any reduction, when known",
    )


class AuditRecord(BaseModel):
    """One record on ``gpu.audit.<cluster>`` per call of a tool that could change something."""

    time: AwareDatetime = Field(default_factory=utcnow)
    cluster: str
    principal: str
    role: str
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    decision: Literal["allow", "deny", "approval_required"]
    reasons: list[str] = Field(default_factory=list)
    policies: list[str] = Field(default_factory=list, description="the rules behind the decision")
    dry_run: bool = False
    idempotency_key: str | None = None
    replayed: bool = False
    ok: bool
    result: str = ""
