"""Idempotency keys for mutations: a repeated call with the same key returns the first answer.

The runbook engine keys each mutating step of a fault by the fault and the action
(``<cluster>/<gpu or node>/<action>/<fault epoch>/…``, see ``runbooks.engine``), so a redelivered
event, a second agent replica or a resumed run cannot act twice. Rules:

- Keys are scoped to the caller's role and the action (``scope``), not to the principal: agent
  replicas with tokens of their own share their keys, while a viewer still cannot borrow an
  operator's result; a replay needs no second policy check, because the first call passed it.
- A key is bound to the call's arguments: reusing it for another target is refused, not answered
  with the first target's result.
- The claim is a KV ``create`` (compare-and-set on "no such key"), so two concurrent callers cannot
  both act. A claim made for an incident records which agent replica held the incident's lease
  then (``events.leases``); once that lease is gone (expired, or taken over by another replica) the
  claim is taken over at once. Any other claim whose holder died (still pending after
  ``stale_after_s``) is taken over then, so a crashed run can resume instead of waiting for the key
  to expire.
"""

from __future__ import annotations

import json
import time
from functools import partial
from typing import Any, Literal, Protocol

from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from pydantic import BaseModel

from contracts.tools import ActionOutcome
from events import subjects
from events.documents import DocumentConflict, DocumentExists, Documents, KvDocuments, MemoryDocuments
from events.leases import Leases
from events.models import stable_id

STALE_AFTER_S = 300.0
IN_FLIGHT = "is still running"
"""In the refusal of a key whose first call has not finished: the caller retries a little later."""


class IdempotencyConflict(Exception):
    """Another call with the same key is still running, or the key was used for other arguments."""


class KeyInFlight(IdempotencyConflict):
    """The earlier call with this key has not finished: the caller retries a little later."""


class Claim(BaseModel):
    state: Literal["pending", "done"]
    fingerprint: str
    since: float
    outcome: ActionOutcome | None = None
    lease: str | None = None
    """The lease of the caller's work (``incident.<id>``), when the call named its incident."""
    holder: str | None = None
    """Who held ``lease`` when the claim was made (None: nobody did)."""


def scope_of(role: str, action: str) -> str:
    """Keys answer within one role and one action (see the module docstring)."""
    return f"{role}:{action}"


def fingerprint(arguments: dict[str, Any]) -> str:
    """What makes two calls "the same": every argument but the key itself and free text."""
    relevant = {k: v for k, v in arguments.items() if k not in ("idempotency_key", "reason", "dry_run")}
    return stable_id(json.dumps(relevant, sort_keys=True, default=str))


class IdempotencyStore(Protocol):
    async def claim(
        self, scope: str, key: str, fingerprint: str, lease: str | None = None
    ) -> ActionOutcome | None:
        """Reserve the key; returns the stored outcome when the same call was made before.
        ``lease``: the lease of the caller's work, whose loss frees a pending claim at once."""
        ...

    async def complete(self, scope: str, key: str, fingerprint: str, outcome: ActionOutcome) -> None: ...

    async def release(self, scope: str, key: str) -> None:
        """Give the key back after a failure, so a retry can act."""
        ...


def _kv_key(scope: str, key: str) -> str:
    return f"k.{stable_id(scope, key)}"


def _settle(
    existing: Claim, key: str, fp: str, now: float, stale_after_s: float, holder_gone: bool
) -> ActionOutcome | None:
    """The answer to a claim on a key that exists; None means "take it over"."""
    if existing.fingerprint != fp:
        raise IdempotencyConflict(f"idempotency key {key!r} was already used for a call with other arguments")
    if existing.state == "done" and existing.outcome is not None:
        return existing.outcome
    if now - existing.since < stale_after_s and not holder_gone:
        raise KeyInFlight(f"an earlier call with idempotency key {key!r} {IN_FLIGHT}")
    return None


class DocumentIdempotency:
    """Claims as typed documents (``events.documents``): ``create`` reserves, compare-and-set takes
    a dead holder's claim over."""

    def __init__(
        self, docs: Documents[Claim], *, stale_after_s: float = STALE_AFTER_S, leases: Leases | None = None
    ) -> None:
        self.docs = docs
        self.stale_after_s = stale_after_s
        self.leases = leases

    async def _holder(self, lease: str | None) -> str | None:
        return await self.leases.holder(lease) if self.leases is not None and lease else None

    async def _holder_gone(self, claim: Claim) -> bool:
        """The claim's caller held a lease on its work, and holds it no more (it died or lost it)."""
        if claim.state != "pending" or claim.holder is None:
            return False
        return await self._holder(claim.lease) != claim.holder

    async def claim(
        self, scope: str, key: str, fingerprint: str, lease: str | None = None
    ) -> ActionOutcome | None:
        k = _kv_key(scope, key)
        holder = await self._holder(lease)
        for _ in range(5):
            pending = Claim(
                state="pending", fingerprint=fingerprint, since=time.time(), lease=lease, holder=holder
            )
            try:
                await self.docs.create(k, pending)
                return None
            except DocumentExists:
                pass
            found = await self.docs.read(k)
            if found is None:
                continue  # released in between: try to create again
            gone = await self._holder_gone(found.doc)
            answer = _settle(found.doc, key, fingerprint, time.time(), self.stale_after_s, gone)
            if answer is not None:
                return answer
            try:  # the holder died: take the claim over, unless someone else just did
                await self.docs.replace(k, pending, found.revision)
                return None
            except DocumentConflict:
                continue
        raise IdempotencyConflict(f"idempotency key {key!r} is contended; retry")

    async def complete(self, scope: str, key: str, fingerprint: str, outcome: ActionOutcome) -> None:
        done = Claim(state="done", fingerprint=fingerprint, since=time.time(), outcome=outcome)
        await self.docs.update(_kv_key(scope, key), partial(_become, done), default=lambda: done)

    async def release(self, scope: str, key: str) -> None:
        await self.docs.delete(_kv_key(scope, key))


def _become(new: Claim, claim: Claim) -> None:
    for name in Claim.model_fields:
        setattr(claim, name, getattr(new, name))


class KvIdempotency(DocumentIdempotency):
    def __init__(
        self, kv: KeyValue, *, stale_after_s: float = STALE_AFTER_S, leases: Leases | None = None
    ) -> None:
        super().__init__(KvDocuments(kv, Claim), stale_after_s=stale_after_s, leases=leases)

    @classmethod
    async def open(cls, js: JetStreamContext) -> KvIdempotency:
        """Claims in ``idempotency``, freed when their caller's lease in ``leases`` is gone."""
        return cls(await js.key_value(subjects.BUCKET_IDEMPOTENCY), leases=await Leases.open(js))


class MemoryIdempotency(DocumentIdempotency):
    def __init__(self, *, stale_after_s: float = STALE_AFTER_S, leases: Leases | None = None) -> None:
        super().__init__(MemoryDocuments(Claim), stale_after_s=stale_after_s, leases=leases)
