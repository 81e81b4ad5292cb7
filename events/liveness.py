"""Liveness of the platform's long-running loops: each says when it last did its job.

A loop (a consumer, a detector, a watcher, a publisher) takes a ``LoopProbe`` from the process's
``Liveness`` registry and reports on it: ``ok()`` after each successful fetch, publish or round,
``error(exc)`` for a failure it will retry, ``idle()`` while it has nothing to do (waiting on an
empty queue: it cannot be late then), ``stopped()`` when it ends. The registry answers three
questions for ``aiops up``'s status output, ``/healthz``, ``/readyz`` and metrics:

- is every loop still running (none ended without being asked to)?  — ``live()``
- is any loop stale: busy, but without a success for longer than its threshold?  — ``stale()``
- the figures per loop (counts, seconds since the last success)  — ``statuses()``

Everything is read from plain counters; nothing here does I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

LoopState = Literal["running", "stopped", "crashed"]

DEFAULT_STALE_AFTER_S = 30.0


@dataclass(frozen=True)
class LoopStatus:
    """One loop at one moment: what the status output, the health endpoints and metrics read."""

    name: str
    state: LoopState
    stale: bool
    idle: bool
    seconds_since_ok: float | None
    """None when it never succeeded yet."""
    stale_after_s: float
    ok_total: int
    errors_total: int
    retries_total: int
    dropped_total: int
    restarts_total: int
    last_error: str | None
    """The class of the last error (never its text: it may carry payloads)."""


class LoopProbe:
    """What one loop reports; cheap enough to call once per message."""

    def __init__(self, name: str, stale_after_s: float, clock: Callable[[], float]) -> None:
        self.name = name
        self.stale_after_s = stale_after_s
        self._clock = clock
        self.state: LoopState = "stopped"
        self.started_at = clock()
        self.last_ok: float | None = None
        self.is_idle = False
        self.ok_total = 0
        self.errors_total = 0
        self.retries_total = 0
        self.dropped_total = 0
        self.restarts_total = -1  # the first start is not a restart
        self.last_error: str | None = None
        self.error_pending = False

    def started(self) -> None:
        if self.state != "running":
            self.restarts_total += 1
        self.state = "running"
        self.started_at = self._clock()

    def restarted(self) -> None:
        """Started again after it failed (by a supervisor that kept it marked running)."""
        self.restarts_total += 1

    def ok(self, n: int = 1) -> None:
        """A successful fetch, publish or round (``n`` messages)."""
        self.last_ok = self._clock()
        self.ok_total += n
        self.is_idle = False
        self.error_pending = False

    def idle(self) -> None:
        """Nothing to do right now (an empty queue): not late, whatever the time since ``ok``."""
        self.is_idle = True
        self.error_pending = False

    def busy(self) -> None:
        self.is_idle = False

    def error(self, exc: BaseException) -> None:
        """A failure the loop rides out (it backs off and tries again)."""
        self.errors_total += 1
        self.last_error = type(exc).__name__
        self.is_idle = False
        self.error_pending = True

    def retried(self) -> None:
        self.retries_total += 1

    def dropped(self, n: int = 1) -> None:
        """Messages given up on (a bounded retry budget ran out)."""
        self.dropped_total += n

    def stopped(self, crash: BaseException | None = None) -> None:
        """The loop ended: asked to (``crash`` None) or not."""
        if crash is not None:
            self.last_error = type(crash).__name__
        self.state = "crashed" if crash is not None else "stopped"

    def status(self) -> LoopStatus:
        now = self._clock()
        since = None if self.last_ok is None else now - self.last_ok
        reference = self.last_ok if self.last_ok is not None else self.started_at
        stale = self.state == "running" and not self.is_idle and now - reference > self.stale_after_s
        return LoopStatus(
            name=self.name,
            state=self.state,
            stale=stale,
            idle=self.is_idle,
            seconds_since_ok=since,
            stale_after_s=self.stale_after_s,
            ok_total=self.ok_total,
            errors_total=self.errors_total,
            retries_total=self.retries_total,
            dropped_total=self.dropped_total,
            restarts_total=max(0, self.restarts_total),
            last_error=self.last_error,
        )


@dataclass(frozen=True)
class ConsumerRef:
    """A durable JetStream consumer a loop pulls from: readiness checks that it exists."""

    stream: str
    durable: str


class Liveness:
    """The registry of one process's loops (pass it to each loop you build)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._probes: dict[str, LoopProbe] = {}
        self.consumers: set[ConsumerRef] = set()

    def probe(self, name: str, *, stale_after_s: float = DEFAULT_STALE_AFTER_S) -> LoopProbe:
        """The probe of loop ``name`` (the same one again after a restart of that loop)."""
        found = self._probes.get(name)
        if found is None:
            found = self._probes[name] = LoopProbe(name, stale_after_s, self._clock)
        return found

    def consumer(self, stream: str, durable: str) -> None:
        self.consumers.add(ConsumerRef(stream, durable))

    def statuses(self) -> list[LoopStatus]:
        return [p.status() for _, p in sorted(self._probes.items())]

    def live(self) -> bool:
        """No loop ended without being asked to."""
        return all(p.state != "crashed" for p in self._probes.values())

    def stale(self) -> list[str]:
        return [s.name for s in self.statuses() if s.stale]


def render(statuses: list[LoopStatus]) -> str:
    """One line per loop, for a terminal."""
    lines = []
    for s in statuses:
        since = "never" if s.seconds_since_ok is None else f"{s.seconds_since_ok:.1f}s ago"
        flag = "STALE" if s.stale else ("idle" if s.idle else s.state)
        if s.state != "running":
            flag = s.state
        extra = f", {s.errors_total} errors (last {s.last_error})" if s.errors_total else ""
        extra += f", {s.dropped_total} dropped" if s.dropped_total else ""
        lines.append(f"  {s.name:28} {flag:8} last ok {since}{extra}")
    return "\n".join(lines)
