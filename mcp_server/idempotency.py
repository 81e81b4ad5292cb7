"""Idempotency keys for mutations: a repeated call with the same key returns the first answer.

The runbook engine keys each mutating step by incident and step, so a redelivered event, a second
agent replica or a resumed run cannot act twice. The claim is a KV ``create`` (compare-and-set on
"no such key"), so two concurrent callers cannot both act.
"""

from __future__ import annotations

from typing import Protocol

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from events import subjects
from events.models import stable_id
from mcp_server.models import ActionOutcome

_PENDING = b"pending"


class IdempotencyConflict(Exception):
    """Another call with the same key is still running."""


class IdempotencyStore(Protocol):
    async def claim(self, action: str, key: str) -> ActionOutcome | None:
        """Reserve the key; returns the stored outcome when the key was used before."""
        ...

    async def complete(self, action: str, key: str, outcome: ActionOutcome) -> None: ...

    async def release(self, action: str, key: str) -> None:
        """Give the key back after a failure, so a retry can act."""
        ...


def _kv_key(action: str, key: str) -> str:
    return f"{action}.{stable_id(key)}"


class KvIdempotency:
    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext) -> KvIdempotency:
        return cls(await js.key_value(subjects.BUCKET_IDEMPOTENCY))

    async def claim(self, action: str, key: str) -> ActionOutcome | None:
        k = _kv_key(action, key)
        try:
            await self._kv.create(k, _PENDING)
            return None
        except KeyWrongLastSequenceError:
            pass
        try:
            entry = await self._kv.get(k)
        except KeyNotFoundError:
            # Released between our create and get: try once more.
            await self._kv.create(k, _PENDING)
            return None
        if entry.value == _PENDING or not entry.value:
            raise IdempotencyConflict(f"an earlier call with idempotency key {key!r} is still running")
        return ActionOutcome.model_validate_json(entry.value)

    async def complete(self, action: str, key: str, outcome: ActionOutcome) -> None:
        await self._kv.put(_kv_key(action, key), outcome.model_dump_json().encode())

    async def release(self, action: str, key: str) -> None:
        await self._kv.delete(_kv_key(action, key))


class MemoryIdempotency:
    def __init__(self) -> None:
        self._seen: dict[str, ActionOutcome | None] = {}

    async def claim(self, action: str, key: str) -> ActionOutcome | None:
        k = _kv_key(action, key)
        if k not in self._seen:
            self._seen[k] = None
            return None
        stored = self._seen[k]
        if stored is None:
            raise IdempotencyConflict(f"an earlier call with idempotency key {key!r} is still running")
        return stored

    async def complete(self, action: str, key: str, outcome: ActionOutcome) -> None:
        self._seen[_kv_key(action, key)] = outcome

    async def release(self, action: str, key: str) -> None:
        self._seen.pop(_kv_key(action, key), None)
