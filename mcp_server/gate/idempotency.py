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
from typing import Any, Literal, Protocol

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import BaseModel

from contracts.tools import ActionOutcome
from events import subjects
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


class KvIdempotency:
    def __init__(self, kv: KeyValue, *, stale_after_s: float = STALE_AFTER_S) -> None:
        self._kv = kv
        self.stale_after_s = stale_after_s

    @classmethod
    async def open(cls, js: JetStreamContext) -> KvIdempotency:
        return cls(await js.key_value(subjects.BUCKET_IDEMPOTENCY))

    async def claim(self, scope: str, key: str, fingerprint: str) -> ActionOutcome | None:
        k = _kv_key(scope, key)
        pending = (
            Claim(state="pending", fingerprint=fingerprint, since=time.time()).model_dump_json().encode()
        )
        for _ in range(5):
            try:
                await self._kv.create(k, pending)
                return None
            except KeyWrongLastSequenceError:
                pass
            try:
                entry = await self._kv.get(k)
            except KeyNotFoundError:
                continue  # released in between: try to create again
            existing = Claim.model_validate_json(entry.value or b"{}")
            answer = _settle(existing, key, fingerprint, time.time(), self.stale_after_s)
            if answer is not None:
                return answer
            try:  # the holder died: take the claim over, unless someone else just did
                await self._kv.update(k, pending, last=entry.revision)
                return None
            except KeyWrongLastSequenceError:
                continue
        raise IdempotencyConflict(f"idempotency key {key!r} is contended; retry")

    async def complete(self, scope: str, key: str, fingerprint: str, outcome: ActionOutcome) -> None:
        done = Claim(state="done", fingerprint=fingerprint, since=time.time(), outcome=outcome)
        await self._kv.put(_kv_key(scope, key), done.model_dump_json().encode())

    async def release(self, scope: str, key: str) -> None:
        await self._kv.delete(_kv_key(scope, key))


class MemoryIdempotency:
    def __init__(self, *, stale_after_s: float = STALE_AFTER_S) -> None:
        self._claims: dict[str, Claim] = {}
        self.stale_after_s = stale_after_s

    async def claim(self, scope: str, key: str, fingerprint: str) -> ActionOutcome | None:
        k, now = _kv_key(scope, key), time.time()
        existing = self._claims.get(k)
        if existing is not None:
            answer = _settle(existing, key, fingerprint, now, self.stale_after_s)
            if answer is not None:
                return answer
        self._claims[k] = Claim(state="pending", fingerprint=fingerprint, since=now)
        return None

    async def complete(self, scope: str, key: str, fingerprint: str, outcome: ActionOutcome) -> None:
        self._claims[_kv_key(scope, key)] = Claim(
            state="done", fingerprint=fingerprint, since=time.time(), outcome=outcome
        )

    async def release(self, scope: str, key: str) -> None:
        self._claims.pop(_kv_key(scope, key), None)
