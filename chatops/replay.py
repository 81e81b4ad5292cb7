"""Slack replay protection: a signed request is run once.

Slack signs ``v0:<timestamp>:<body>``; ``SignatureVerifier`` refuses a timestamp more than five
minutes from now, in either direction, so a captured request stays valid for up to ten minutes.
Within that window the signature itself is the request's identity: the first time it is seen it is
recorded, and a repeat is refused. The record lives in the NATS KV bucket ``slack_requests``
(``KvReplayGuard``; every replica of the platform sees it, and ``create`` is a compare-and-set write,
so two replicas receiving the same request concurrently run it once); the bucket's entries expire
after ``WINDOW_S``. ``MemoryReplayGuard`` follows the same protocol for a process without NATS.
Only requests whose signature verified are recorded, so forged traffic cannot fill the record.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Protocol

from nats.js import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from events import subjects

WINDOW_S = 11 * 60.0
"""How long a signature is remembered: the verifier's ±5 minutes, plus a minute of clock skew."""


def request_key(signature: str) -> str:
    """A KV-safe key for a request signature."""
    return hashlib.sha256(signature.encode()).hexdigest()


class ReplayGuard(Protocol):
    async def first_time(self, signature: str) -> bool:
        """Record ``signature``; False when it was already recorded (a replay)."""
        ...


class KvReplayGuard:
    """The record in NATS KV (bucket ``slack_requests``, declared by ``events.streams``)."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._kv: KeyValue | None = None

    async def first_time(self, signature: str) -> bool:
        if self._kv is None:
            self._kv = await self._js.key_value(subjects.BUCKET_SLACK_REQUESTS)
        try:
            await self._kv.create(request_key(signature), b"")
        except KeyWrongLastSequenceError:
            return False
        return True


class MemoryReplayGuard:
    """The same protocol in memory, for one process with no NATS (and for tests)."""

    def __init__(self, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._seen: dict[str, float] = {}

    async def first_time(self, signature: str) -> bool:
        now = self._clock()
        if len(self._seen) > 10_000:
            self._seen = {k: t for k, t in self._seen.items() if t > now}
        key = request_key(signature)
        expires = self._seen.get(key)
        if expires is not None and expires > now:
            return False
        self._seen[key] = now + self.window_s
        return True
