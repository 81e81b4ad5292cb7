"""Persisted runbook runs: each step's state is written before and after it runs, so a run that
was interrupted resumes without repeating a finished mutation."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal, Protocol

from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from pydantic import BaseModel, Field

from contracts.refusal import Refusal
from events import subjects
from events.documents import (
    MAX_CAS_RETRIES,
    DocumentConflict,
    DocumentExists,
    Documents,
    KvDocuments,
    MemoryDocuments,
)
from events.incident import Decision
from events.models import stable_id, utcnow

RunStatus = Literal[
    "pending",
    "running",
    "waiting",
    "awaiting_approval",
    "succeeded",
    "failed",
    "precondition_failed",
    "denied",
    "rolled_back",
    "dry_run",
    "abandoned",
]
StepStatus = Literal["pending", "running", "waiting", "awaiting_approval", "done", "failed", "skipped"]
Phase = Literal["precondition", "step", "verify", "rollback", "confirm"]
ConfirmStatus = Literal["none", "pending", "confirmed", "failed"]
TERMINAL: frozenset[str] = frozenset(
    {"succeeded", "failed", "precondition_failed", "denied", "rolled_back", "dry_run", "abandoned"}
)


class StepState(BaseModel):
    id: str
    phase: Phase
    tool: str
    status: StepStatus = "pending"
    arguments: dict[str, Any] = Field(default_factory=dict)
    mutating: bool = False
    idempotency_key: str | None = None
    decision: Decision | None = None
    reasons: list[str] = Field(default_factory=list)
    result: Any = None
    error: str | None = None
    approval_id: str | None = Field(default=None, description="the approval this step waits for")
    attempts: int = Field(default=0, description="calls made (a wait polls; a resume repeats)")
    waiting_since: datetime | None = Field(default=None, description="when a `wait` step began waiting")
    started_at: datetime | None = None
    finished_at: datetime | None = None


class RunState(BaseModel):
    run_id: str
    runbook: str
    params: dict[str, Any]
    context: dict[str, Any] = Field(default_factory=dict, description="incident facts the templates may use")
    dry_run: bool = False
    status: RunStatus = "pending"
    steps: list[StepState] = Field(default_factory=list)
    saved: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    approval_id: str | None = Field(default=None, description="set while the run waits for a person")
    refusal: Refusal | None = Field(default=None, description="why the gate refused the step that stopped it")
    confirm_status: ConfirmStatus = Field(
        default="none", description="the runbook's `confirm` checks after it succeeded"
    )
    confirm_error: str | None = None
    fence: int = Field(
        default=0, description="the fencing token of the lease its writer holds (0: no leases)"
    )
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    def step(self, step_id: str) -> StepState | None:
        return next((s for s in self.steps if s.id == step_id), None)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


class RunFenced(Exception):
    """The run was taken over: its stored state carries a newer fencing token than this writer's."""


class RunStore(Protocol):
    async def load(self, run_id: str) -> RunState | None: ...

    async def save(self, state: RunState) -> None:
        """Write compare-and-set; ``RunFenced`` if a newer owner (a higher ``fence``) wrote it."""
        ...


def _key(run_id: str) -> str:
    return f"run.{stable_id(run_id)}"


class DocumentRunStore:
    """Runs as typed documents (``events.documents``). A save is compare-and-set on the revision it
    read, and refused when the stored run carries a higher fencing token than the one saving it:
    the replica whose lease expired cannot overwrite the run its successor resumed."""

    def __init__(self, docs: Documents[RunState], clock: Callable[[], datetime] = utcnow) -> None:
        """``clock`` stamps ``updated_at``: the backend's clock (the twin's on the embedded platform)."""
        self.docs = docs
        self.clock = clock

    async def load(self, run_id: str) -> RunState | None:
        return await self.docs.get(_key(run_id))

    async def save(self, state: RunState) -> None:
        state.updated_at = self.clock()
        key = _key(state.run_id)
        for _ in range(MAX_CAS_RETRIES):
            found = await self.docs.read(key)
            try:
                if found is None:
                    await self.docs.create(key, state)
                    return
                if found.doc.fence > state.fence:
                    raise RunFenced(
                        f"run {state.run_id} belongs to a newer owner (fence {found.doc.fence} > {state.fence})"
                    )
                await self.docs.replace(key, state, found.revision)
                return
            except (DocumentExists, DocumentConflict):
                continue
        raise DocumentConflict(f"run {state.run_id} kept changing under us")


class KvRunStore(DocumentRunStore):
    """Runs in the JetStream KV bucket ``runbook_runs``."""

    def __init__(self, kv: KeyValue, clock: Callable[[], datetime] = utcnow) -> None:
        super().__init__(KvDocuments(kv, RunState), clock)

    @classmethod
    async def open(cls, js: JetStreamContext, clock: Callable[[], datetime] = utcnow) -> KvRunStore:
        return cls(await js.key_value(subjects.BUCKET_RUNBOOK_RUNS), clock)


class MemoryRunStore(DocumentRunStore):
    def __init__(self) -> None:
        super().__init__(MemoryDocuments(RunState))
