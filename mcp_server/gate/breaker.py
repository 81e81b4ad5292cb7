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
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import BaseModel, Field

from events import subjects

TAKES_OUT: frozenset[str] = frozenset({"isolate_gpu", "cordon_node", "drain_node", "reboot_node"})
"""Actions that take capacity out of service: the ones the breaker counts and stops."""
Backlog = Literal["retry", "escalate"]
MAX_CAS_RETRIES = 20


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


def _key(cluster: str) -> str:
    return f"b.{subjects.token(cluster)}"


class KvBreaker:
    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext) -> KvBreaker:
        return cls(await js.key_value(subjects.BUCKET_BREAKER))

    async def load(self, cluster: str) -> BreakerState:
        try:
            entry = await self.kv.get(_key(cluster))
        except KeyNotFoundError:
            return BreakerState(cluster=cluster)
        return BreakerState.model_validate_json(entry.value) if entry.value else BreakerState(cluster=cluster)

    async def update(self, cluster: str, change: Callable[[BreakerState], None]) -> BreakerState:
        for _ in range(MAX_CAS_RETRIES):
            try:
                entry = await self.kv.get(_key(cluster))
                state = (
                    BreakerState.model_validate_json(entry.value)
                    if entry.value
                    else BreakerState(cluster=cluster)
                )
                revision: int | None = entry.revision
            except KeyNotFoundError:
                state, revision = BreakerState(cluster=cluster), None
            change(state)
            payload = state.model_dump_json().encode()
            try:
                if revision is None:
                    await self.kv.create(_key(cluster), payload)
                else:
                    await self.kv.update(_key(cluster), payload, last=revision)
            except KeyWrongLastSequenceError:
                continue
            return state
        raise RuntimeError(f"the breaker state of {cluster} kept changing under us")


class MemoryBreaker:
    def __init__(self) -> None:
        self.states: dict[str, BreakerState] = {}

    async def load(self, cluster: str) -> BreakerState:
        return self.states.get(cluster, BreakerState(cluster=cluster)).model_copy(deep=True)

    async def update(self, cluster: str, change: Callable[[BreakerState], None]) -> BreakerState:
        state = await self.load(cluster)
        change(state)
        self.states[cluster] = state
        return state.model_copy(deep=True)
