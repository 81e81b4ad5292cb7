"""The circuit breaker on isolations, its state persisted in the JetStream KV bucket ``breaker``.

Every action that takes capacity out of service (``TAKES_OUT``) is logged against its node. Before
such an action the guard projects the share of the cluster's nodes taken out within the window
(``window_s``, on the backend's clock) *with* this one; if that share would pass the threshold the
breaker trips instead and the action is denied (Cedar ``breaker-open``), and so is every later
isolation, for everyone, until a person resets it (``reset_breaker``, ``aiops breaker reset``).

A reset opens a new window: take-outs before the reset no longer count, so the next trip needs the
threshold's worth of *new* take-outs. The backlog — incidents whose isolation the open breaker
stopped (``held_by = "breaker"``) — is handled as the person resetting it says: ``retry`` (default)
re-plans them oldest first from current facts through the same gate, so a storm that goes on trips
the breaker again after the threshold; ``escalate`` leaves them with people.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Literal, Protocol

from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from pydantic import BaseModel, Field

from events import subjects
from events.documents import DocumentConflict, Documents, KvDocuments, MemoryDocuments

TAKES_OUT: frozenset[str] = frozenset({"isolate_gpu", "cordon_node", "drain_node", "reboot_node"})
"""Actions that take capacity out of service: the ones the breaker counts and stops."""
Backlog = Literal["retry", "escalate"]


class TakeOut(BaseModel):
    time: datetime
    node: str
    action: str
    principal: str


class BreakerState(BaseModel):
    cluster: str
    open: bool = False
    tripped_at: datetime | None = None
    trip_reason: str | None = None
    taken_out_at_trip: list[str] = Field(default_factory=list, description="the nodes in the window")
    takeouts: list[TakeOut] = Field(default_factory=list, description="recent take-outs (trimmed)")
    window_started_at: datetime | None = Field(
        default=None, description="the last reset: earlier ones don't count"
    )
    reset_by: str | None = None
    reset_at: datetime | None = None
    reset_comment: str = ""
    backlog: Backlog | None = Field(
        default=None, description="what the last reset decided for held incidents"
    )
    trips: int = 0
    resets: int = 0

    def nodes_taken_out(self, now: datetime, window_s: float) -> list[str]:
        """Distinct nodes taken out within the window ending ``now`` (a reset clears the log)."""
        since = now - timedelta(seconds=window_s)
        return sorted({t.node for t in self.takeouts if t.time >= since})


def would_trip(taken_out: int, cluster_nodes: int, threshold_pct: int) -> bool:
    """True when ``taken_out`` of ``cluster_nodes`` passes ``threshold_pct`` percent."""
    return cluster_nodes > 0 and taken_out * 100 > threshold_pct * cluster_nodes


def share_pct(taken_out: int, cluster_nodes: int) -> int:
    """Whole percent, rounded up (Cedar has no floats; 3 of 16 is 19%, never 18%)."""
    return -(-taken_out * 100 // cluster_nodes) if cluster_nodes else 0


class BreakerStore(Protocol):
    async def load(self, cluster: str) -> BreakerState: ...

    async def update(self, cluster: str, change: Callable[[BreakerState], None]) -> BreakerState:
        """Apply ``change`` and write it back unless someone wrote in between (then retry)."""
        ...


def _key(cluster: str, generation: str) -> str:
    key = f"b.{subjects.token(cluster)}"
    return f"{key}.{subjects.token(generation)}" if generation else key


class DocumentBreaker:
    """The breaker state per cluster as a typed document (``events.documents``), compare-and-set.

    ``generation`` names the fleet the state is about when the fleet does not outlive the process:
    each fresh fleet twin is its own generation, so a twin starts with a closed breaker and no
    take-outs whatever an earlier twin run left in the bucket (its record stays, under its own key).
    A real cluster outlives every process: no generation, one state per cluster."""

    def __init__(self, docs: Documents[BreakerState], generation: str = "") -> None:
        self.docs = docs
        self.generation = generation

    async def load(self, cluster: str) -> BreakerState:
        return await self.docs.get(_key(cluster, self.generation)) or BreakerState(cluster=cluster)

    async def update(self, cluster: str, change: Callable[[BreakerState], None]) -> BreakerState:
        try:
            return await self.docs.update(
                _key(cluster, self.generation), change, default=lambda: BreakerState(cluster=cluster)
            )
        except DocumentConflict:
            raise RuntimeError(f"the breaker state of {cluster} kept changing under us") from None


class KvBreaker(DocumentBreaker):
    def __init__(self, kv: KeyValue, generation: str = "") -> None:
        super().__init__(KvDocuments(kv, BreakerState), generation)

    @classmethod
    async def open(cls, js: JetStreamContext, generation: str = "") -> KvBreaker:
        return cls(await js.key_value(subjects.BUCKET_BREAKER), generation)


class MemoryBreaker(DocumentBreaker):
    def __init__(self) -> None:
        super().__init__(MemoryDocuments(BreakerState))
