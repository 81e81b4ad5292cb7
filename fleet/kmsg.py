"""The kernel message stream of the whole fleet: a bounded buffer plus synchronous subscribers.

Like the kernel's ring buffer, the buffer keeps the newest lines and drops the oldest when full.
Subscribers are called synchronously, in order, for every line; an async publisher (e.g. to NATS
``gpu.kmsg.<cluster>.<node>``) should only enqueue in its callback, e.g. ``queue.put_nowait``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

KmsgCallback = Callable[[str, str], None]
"""Called with (node, line)."""

DEFAULT_CAPACITY = 65_536


class KmsgQueue:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._lines: deque[tuple[str, str]] = deque(maxlen=capacity)
        self._subscribers: list[KmsgCallback] = []

    def __len__(self) -> int:
        return len(self._lines)

    def push(self, node: str, line: str) -> None:
        self._lines.append((node, line))
        for callback in list(self._subscribers):
            callback(node, line)

    def drain(self) -> list[tuple[str, str]]:
        """Every buffered (node, line), oldest first; the buffer is empty afterwards."""
        lines = list(self._lines)
        self._lines.clear()
        return lines

    def subscribe(self, callback: KmsgCallback) -> Callable[[], None]:
        """Call ``callback`` for every future line; returns a function that unsubscribes it."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe
