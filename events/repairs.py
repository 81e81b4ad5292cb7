"""The deferred repair contract: what the repair worker (``agents.repairs``) writes to KV ``repairs``
and what the ``list_repairs`` tool returns.

A plan that contains a fault now and leaves the repair the Xid catalog calls for until later (a GPU
reset that applies a pending remap, a node reboot after a GPU fell off the bus) queues that repair
with its incident (``Plan.deferred``). One record per node (key ``node.<node>``): the GPUs to
reset, or the node to reboot, and the incidents that asked. Every change is compare-and-set
(``events.documents``), and a replica runs a repair only after claiming it (``owner`` and a lease),
so two agents never run the same repair.

Status: ``queued`` (waiting for the node to be idle and the incidents' containment to finish) →
``running`` (the runbook chain: reset → reboot → escalate, each step an MCP call through the gate)
→ ``returning`` (repaired and verified: return-to-service) → ``returned`` (in service, or back in
the warm spare pool). A chain that ends at the ``escalate`` runbook is ``escalated`` (a hardware
ticket is open); a run the gate refused is ``refused``; a chain that failed with no fallback left
is ``failed``; an observe-only platform ends at ``dry_run`` (what would have been done).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from events.documents import Documents
from events.incident import RunbookInvocation, TimelineEntry
from events.models import utcnow

RepairStatus = Literal[
    "queued", "running", "returning", "returned", "escalated", "refused", "failed", "dry_run"
]
ACTIVE: frozenset[str] = frozenset({"queued", "running", "returning"})
REBOOT = "drain-and-reboot-node"
RESET = "reset-gpu"
RETURN = "return-to-service"


class RepairRun(BaseModel):
    """One runbook run of the repair (its id names the run in KV ``runbook_runs``)."""

    run_id: str
    runbook: str
    params: dict[str, object] = Field(default_factory=dict)
    status: str = "pending"
    error: str | None = None


class Repair(BaseModel):
    key: str = Field(description="'node.<node>': one repair record per node")
    cluster: str = ""
    node: str
    gpus: list[int] = Field(default_factory=list, description="GPUs to reset (empty: the node reboots)")
    reboot: bool = Field(
        default=False, description="the node reboots (the catalog asks for it, or a reset failed)"
    )
    incidents: list[str] = Field(default_factory=list, description="the incidents that queued it")
    status: RepairStatus = "queued"
    attempt: int = Field(default=1, ge=1, description="a repair of a node already repaired once counts up")
    dry_run: bool = Field(default=False, description="observe-only: each step is only policy-checked")
    owner: str | None = Field(default=None, description="the agent replica that claimed it")
    lease_until: datetime | None = Field(
        default=None, description="the claim lapses after this (a dead replica)"
    )
    waiting_for: str | None = Field(default=None, description="why a queued repair has not started")
    runs: list[RepairRun] = Field(default_factory=list, description="the runbook runs, in order")
    returned_to: Literal["service", "spare_pool"] | None = None
    queued_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    history: list[TimelineEntry] = Field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def first_runbook(self) -> list[RunbookInvocation]:
        """The repair to run first: the reboot, else one reset per GPU (each falls back to a reboot)."""
        if self.reboot or not self.gpus:
            return [RunbookInvocation(runbook=REBOOT, params={"node": self.node, "reason": self.reason()})]
        return [
            RunbookInvocation(runbook=RESET, params={"node": self.node, "gpu": gpu, "reason": self.reason()})
            for gpu in self.gpus
        ]

    def reason(self) -> str:
        return f"deferred repair for {', '.join(self.incidents[:4])}"

    def note(self, what: str, detail: str = "", at: datetime | None = None) -> None:
        self.history.append(TimelineEntry(what=what, detail=detail, time=at or utcnow()))


def repair_key(node: str) -> str:
    return f"node.{node}"


class RepairBook:
    """Repairs in a document store (KV ``repairs`` in a deployment; memory in tests)."""

    def __init__(self, docs: Documents[Repair]) -> None:
        self.docs = docs

    async def get(self, node: str) -> Repair | None:
        return await self.docs.get(repair_key(node))

    async def list_repairs(self, node: str | None = None, active_only: bool = False) -> list[Repair]:
        found = [
            r
            for r in await self.docs.values()
            if (node is None or r.node == node) and (not active_only or r.active)
        ]
        return sorted(found, key=lambda r: (r.queued_at, r.key))


class RepairSource(Protocol):
    """Where the ``list_repairs`` tool reads repairs from."""

    async def list_repairs(self, node: str | None = None, active_only: bool = False) -> list[Repair]: ...


class NoRepairs:
    """For an MCP server running without the agents: no repair was ever queued."""

    async def list_repairs(self, node: str | None = None, active_only: bool = False) -> list[Repair]:
        return []
