"""Idempotency keys for mutations: a repeated call with the same key returns the first answer.

The runbook engine keys each mutating step by incident and step, so a redelivered event, a second
agent replica or a resumed run cannot act twice. Rules:

- Keys are scoped to the caller and the action: one principal's key never answers for another (a
  viewer cannot borrow an operator's result), and a replay needs no second policy check, because
  the first call passed it.
- A key is bound to the call's arguments: reusing it for another target is refused, not answered
  with the first target's result.
- The claim is a KV ``create`` (compare-and-set on "no such key"), so two concurrent callers cannot
  both act. A claim whose holder died (still pending after ``stale_after_s``) is taken over, so a
  crashed run can resume instead of waiting for the key to expire.
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


def fingerprint(arguments: dict[str, Any]) -> str:
    """What makes two calls "the same": every argument but the key itself and free text."""
    relevant = {k: v for k, v in arguments.items() if k not in ("idempotency_key", "reason", "dry_run")}
    return stable_id(json.dumps(relevant, sort_keys=True, default=str))


class IdempotencyStore(Protocol):
    async def claim(self, scope: str, key: str, fingerprint: str) -> ActionOutcome | None:
        """Reserve the key; returns the stored outcome when the same call was made before."""
        ...

    async def complete(self, scope: str, key: str, fingerprint: str, outcome: ActionOutcome) -> None: ...

    async def release(self, scope: str, key: str) -> None:
        """Give the key back after a failure, so a retry can act."""
        ...


def _kv_key(scope: str, key: str) -> str:
    return f"k.{stable_id(scope, key)}"


def _settle(existing: Claim, key: str, fp: str, now: float, stale_after_s: float) -> ActionOutcome | None:
    """The answer to a claim on a key that exists; None means "take it over"."""
    if existing.fingerprint != fp:
        raise IdempotencyConflict(f"idempotency key {key!r} was already used for a call with other arguments")
    if existing.state == "done" and existing.outcome is not None:
        return existing.outcome
    if now - existing.since < stale_after_s:
        raise KeyInFlight(f"an earlier call with idempotency key {key!r} {IN_FLIGHT}")
    return None


class DocumentIdempotency:
    """Claims as typed documents (``events.documents``): ``create`` reserves, compare-and-set takes
    a dead holder's claim over."""

    def __init__(self, docs: Documents[Claim], *, stale_after_s: float = STALE_AFTER_S) -> None:
        self.docs = docs
        self.stale_after_s = stale_after_s

    async def claim(self, scope: str, key: str, fingerprint: str) -> ActionOutcome | None:
        k = _kv_key(scope, key)
        for _ in range(5):
            pending = Claim(state="pending", fingerprint=fingerprint, since=time.time())
            try:
                await self.docs.create(k, pending)
                return None
            except DocumentExists:
                pass
            found = await self.docs.read(k)
            if found is None:
                continue  # released in between: try to create again
            answer = _settle(found.doc, key, fingerprint, time.time(), self.stale_after_s)
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
    def __init__(self, kv: KeyValue, *, stale_after_s: float = STALE_AFTER_S) -> None:
        super().__init__(KvDocuments(kv, Claim), stale_after_s=stale_after_s)

    @classmethod
    async def open(cls, js: JetStreamContext) -> KvIdempotency:
        return cls(await js.key_value(subjects.BUCKET_IDEMPOTENCY))


class MemoryIdempotency(DocumentIdempotency):
    def __init__(self, *, stale_after_s: float = STALE_AFTER_S) -> None:
        super().__init__(MemoryDocuments(Claim), stale_after_s=stale_after_s)
