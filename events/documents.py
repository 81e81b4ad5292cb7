"""Typed documents in a JetStream KV bucket, written compare-and-set; and their in-memory twin.

One pattern the platform needs in many places (incidents, runbook runs, approvals, the breaker,
idempotency claims, correlation keys, leases): a pydantic model stored as JSON under a key, read
with its revision, written back only if nobody wrote in between. ``KvDocuments[T]`` does it on a
NATS KV bucket; ``MemoryDocuments[T]`` has the same semantics in one process (for a server without
NATS and for tests): a revision per key, ``create`` fails on an existing key, ``replace`` fails on
a stale revision, every read returns a copy.

- ``create(key, doc)``: only if the key is absent (or deleted); ``DocumentExists`` otherwise.
- ``replace(key, doc, revision)``: only if the key is still at ``revision``; ``DocumentConflict``
  otherwise. Returns the new revision.
- ``update(key, change, default=...)``: read, apply ``change`` to the document, write back
  compare-and-set; retried on a conflict. Without ``default`` a missing key is ``DocumentMissing``;
  with it, the default document is created (compare-and-set on "no such key").
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import BaseModel

from events.kv import latest_values

T = TypeVar("T", bound=BaseModel)
MAX_CAS_RETRIES = 20


class DocumentMissing(LookupError):
    """No document under the key (never written, or deleted)."""


class DocumentExists(Exception):
    """``create`` on a key that holds a document."""


class DocumentConflict(Exception):
    """Someone wrote the key after the revision the caller read (or kept writing while we retried)."""


@dataclass(frozen=True)
class Versioned(Generic[T]):
    doc: T
    revision: int


class Documents(Protocol[T]):
    async def read(self, key: str) -> Versioned[T] | None: ...

    async def get(self, key: str) -> T | None: ...

    async def create(self, key: str, doc: T) -> int: ...

    async def replace(self, key: str, doc: T, revision: int) -> int: ...

    async def update(
        self, key: str, change: Callable[[T], None], default: Callable[[], T] | None = None
    ) -> T: ...

    async def delete(self, key: str) -> None: ...

    async def values(self) -> list[T]: ...


class _Cas(ABC, Generic[T]):
    """The read-change-write loop, shared by both stores; each store supplies the three primitives."""

    @abstractmethod
    async def read(self, key: str) -> Versioned[T] | None: ...

    @abstractmethod
    async def create(self, key: str, doc: T) -> int: ...

    @abstractmethod
    async def replace(self, key: str, doc: T, revision: int) -> int: ...

    async def get(self, key: str) -> T | None:
        found = await self.read(key)
        return found.doc if found is not None else None

    async def update(
        self, key: str, change: Callable[[T], None], default: Callable[[], T] | None = None
    ) -> T:
        for _ in range(MAX_CAS_RETRIES):
            found = await self.read(key)
            if found is None:
                if default is None:
                    raise DocumentMissing(key)
                doc = default()
                change(doc)
                try:
                    await self.create(key, doc)
                except DocumentExists:
                    continue
                return doc
            change(found.doc)
            try:
                await self.replace(key, found.doc, found.revision)
            except DocumentConflict:
                continue
            return found.doc
        raise DocumentConflict(f"{key} kept changing under us; retry")


class KvDocuments(_Cas[T]):
    """Documents of type ``model`` in a JetStream KV bucket."""

    def __init__(self, kv: KeyValue, model: type[T]) -> None:
        self.kv = kv
        self.model = model

    async def read(self, key: str) -> Versioned[T] | None:
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:
            return None
        if not entry.value or entry.revision is None:
            return None
        return Versioned(self.model.model_validate_json(entry.value), entry.revision)

    async def create(self, key: str, doc: T) -> int:
        try:
            return await self.kv.create(key, doc.model_dump_json().encode())
        except KeyWrongLastSequenceError:
            raise DocumentExists(key) from None

    async def replace(self, key: str, doc: T, revision: int) -> int:
        try:
            return await self.kv.update(key, doc.model_dump_json().encode(), last=revision)
        except KeyWrongLastSequenceError:
            raise DocumentConflict(key) from None

    async def delete(self, key: str) -> None:
        await self.kv.delete(key)

    async def values(self) -> list[T]:
        return [self.model.model_validate_json(v) for v in await latest_values(self.kv)]


class MemoryDocuments(_Cas[T]):
    """The same semantics in one process: revisions per key, copies in and out."""

    def __init__(self, model: type[T]) -> None:
        self.model = model
        self.docs: dict[str, tuple[str, int]] = {}
        self._revision = 0

    def _next(self) -> int:
        self._revision += 1
        return self._revision

    async def read(self, key: str) -> Versioned[T] | None:
        found = self.docs.get(key)
        return Versioned(self.model.model_validate_json(found[0]), found[1]) if found else None

    async def create(self, key: str, doc: T) -> int:
        if key in self.docs:
            raise DocumentExists(key)
        revision = self._next()
        self.docs[key] = (doc.model_dump_json(), revision)
        return revision

    async def replace(self, key: str, doc: T, revision: int) -> int:
        found = self.docs.get(key)
        if found is None or found[1] != revision:
            raise DocumentConflict(key)
        new = self._next()
        self.docs[key] = (doc.model_dump_json(), new)
        return new

    async def delete(self, key: str) -> None:
        self.docs.pop(key, None)

    async def values(self) -> list[T]:
        return [self.model.model_validate_json(raw) for raw, _ in self.docs.values()]
