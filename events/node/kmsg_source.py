"""The kernel ring buffer as records: ``/dev/kmsg`` (or a file in its format), or journald.

A ``/dev/kmsg`` record (Documentation/ABI/testing/dev-kmsg) is one line
``<prio>,<seq>,<usec>,<flags>[,...];<message>`` followed by continuation lines that start with a
space (``KEY=value`` device properties, e.g. `` SUBSYSTEM=pci`` / `` DEVICE=+pci:0000:3b:00.0``).
Non-printable bytes in the message are escaped as ``\\xNN``. ``seq`` is the kernel's own record
number: it rises by one per record within a boot, so a jump is a record the reader never saw (the
ring buffer overwrote it); reading the device then fails once with ``EPIPE``.

``KmsgFile`` follows a regular file in that format (a capture, or a test); ``KmsgDevice`` reads the
character device (one record per ``read``); ``JournalSource`` runs ``journalctl -k -f -o json``
where ``/dev/kmsg`` cannot be read.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import json
import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")


class KmsgFormatError(ValueError):
    """A record that is not ``prio,seq,usec,flags;message``."""


@dataclass(frozen=True)
class KernelRecord:
    seq: int
    usec: int
    """Microseconds since boot (the kernel's monotonic clock)."""
    prio: int
    message: str
    props: tuple[str, ...] = ()
    """Continuation lines, ``KEY=value`` without the leading space."""
    cursor: str | None = None
    """journald's cursor of the entry (journal source only): where a restarted reader resumes."""

    def line(self) -> str:
        """What is shipped: the message with dmesg's uptime prefix, as the kmsg parser reads it."""
        return f"[{self.usec // 1_000_000:5d}.{self.usec % 1_000_000:06d}] {self.message}"


def parse_record(text: str) -> KernelRecord:
    """One record: its header line and any continuation lines (newline-separated)."""
    first, *rest = text.rstrip("\n").split("\n")
    head, sep, message = first.partition(";")
    fields = head.split(",")
    if not sep or len(fields) < 4:
        raise KmsgFormatError(f"not a /dev/kmsg record (want prio,seq,usec,flags;message): {first[:80]!r}")
    try:
        prio, seq, usec = int(fields[0]), int(fields[1]), int(fields[2])
    except ValueError as exc:
        raise KmsgFormatError(f"not a /dev/kmsg record header: {head[:80]!r}") from exc
    message = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), message)
    props = tuple(line[1:] for line in rest if line.startswith(" "))
    return KernelRecord(seq=seq, usec=usec, prio=prio, message=message, props=props)


class KernelSource(Protocol):
    """Records as they become available."""

    where: str
    gaps_are_losses: bool
    """Whether a jump in ``seq`` means records were lost (the kernel's own sequence) or not
    (journald's, which numbers every unit's entries, not only the kernel's)."""

    def read_available(self, limit: int) -> list[KernelRecord]:
        """The records readable now (at most ``limit``), without blocking; [] when none."""
        ...

    async def wait(self, timeout_s: float) -> None:
        """Until more may be readable (or ``timeout_s`` passed)."""
        ...

    async def close(self) -> None: ...


class KmsgFile:
    """Follows a regular file of ``/dev/kmsg`` records, appended to by a writer in whole records."""

    gaps_are_losses = True

    def __init__(self, path: Path, *, poll_s: float = 0.05) -> None:
        self.path = path
        self.where = str(path)
        self.poll_s = poll_s
        self.bad_records = 0
        self._file = path.open("r", encoding="utf-8", errors="replace", newline="\n")
        self._partial = ""
        self._pending: list[str] = []

    def read_available(self, limit: int) -> list[KernelRecord]:
        out: list[KernelRecord] = []
        while len(out) < limit:
            chunk = self._file.readline()
            if not chunk:
                break
            if not chunk.endswith("\n"):
                self._partial += chunk  # a writer mid-line: wait for the rest
                continue
            line, self._partial = self._partial + chunk[:-1], ""
            if line.startswith(" ") and self._pending:
                self._pending.append(line)
                continue
            if self._pending:
                self._emit(out)
            self._pending = [line] if line else []
        if self._pending and len(out) < limit:
            # End of what is written: a record's continuation lines come with it, so it is whole.
            self._emit(out)
        return out

    def _emit(self, out: list[KernelRecord]) -> None:
        text, self._pending = "\n".join(self._pending), []
        try:
            out.append(parse_record(text))
        except KmsgFormatError as exc:
            self.bad_records += 1
            log.warning("%s: skipping %s", self.where, exc)

    async def wait(self, timeout_s: float) -> None:
        await asyncio.sleep(min(self.poll_s, timeout_s))

    async def close(self) -> None:
        self._file.close()


class KmsgDevice:
    """``/dev/kmsg``: each ``read`` returns one record; ``EPIPE`` once when records were overwritten."""

    gaps_are_losses = True

    def __init__(self, path: Path = Path("/dev/kmsg")) -> None:
        self.path = path
        self.where = str(path)
        self.overwritten = 0
        self.bad_records = 0
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)

    def read_available(self, limit: int) -> list[KernelRecord]:
        out: list[KernelRecord] = []
        while len(out) < limit:
            try:
                data = os.read(self._fd, 8192)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EPIPE:
                    self.overwritten += 1  # the sequence gap shows how many
                    continue
                raise
            if not data:
                break
            try:
                out.append(parse_record(data.decode("utf-8", "replace")))
            except KmsgFormatError as exc:
                self.bad_records += 1
                log.warning("%s: skipping %s", self.where, exc)
        return out

    async def wait(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(self._fd, readable)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ready, timeout_s)
        finally:
            loop.remove_reader(self._fd)

    async def close(self) -> None:
        os.close(self._fd)


class JournalSource:
    """``journalctl -k -f -o json`` (kernel messages of this boot), resuming after a cursor.

    journald keeps the kernel's records but not their ring-buffer sequence number; the entry's
    ``__SEQNUM`` (journald's own, rising per entry of any unit; read from the cursor where systemd is
    too old to print it) takes its place, so its gaps are other units' entries, not losses; and
    ``__CURSOR`` is where a restarted reader continues (``--after-cursor``)."""

    gaps_are_losses = False

    def __init__(self, proc: asyncio.subprocess.Process, where: str) -> None:
        self.proc = proc
        self.where = where
        self.bad_records = 0
        self._lines: collections.deque[bytes] = collections.deque()
        self._arrived = asyncio.Event()
        self._reader = asyncio.ensure_future(self._pump())

    @classmethod
    async def start(cls, *, after_cursor: str | None, journalctl: str = "journalctl") -> JournalSource:
        args = [journalctl, "-k", "-f", "-o", "json", "--no-pager"]
        args += ["--after-cursor", after_cursor] if after_cursor else ["-b"]
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        return cls(proc, " ".join(args[:5]))

    async def _pump(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            self._lines.append(line)
            self._arrived.set()

    def read_available(self, limit: int) -> list[KernelRecord]:
        out: list[KernelRecord] = []
        while len(out) < limit and self._lines:
            record = journal_record(self._lines.popleft())
            if record is None:
                self.bad_records += 1
            else:
                out.append(record)
        return out

    async def wait(self, timeout_s: float) -> None:
        if not self._lines:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout_s)

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(ProcessLookupError):
            self.proc.terminate()
        await self.proc.wait()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


def journal_record(data: bytes) -> KernelRecord | None:
    """One ``journalctl -o json`` entry as a record; None when it is not a usable entry."""
    try:
        entry = json.loads(data)
        message = entry["MESSAGE"]
        if isinstance(message, list):  # journald's form of a message that is not valid UTF-8
            message = bytes(message).decode("utf-8", "replace")
        usec = int(entry.get("_SOURCE_MONOTONIC_TIMESTAMP") or entry.get("__MONOTONIC_TIMESTAMP") or 0)
        cursor = str(entry["__CURSOR"])
        return KernelRecord(
            seq=int(entry["__SEQNUM"]) if "__SEQNUM" in entry else _cursor_seqnum(cursor),
            usec=usec,
            prio=int(entry.get("PRIORITY", 6)),
            message=str(message),
            cursor=cursor,
        )
    except (ValueError, KeyError, TypeError):
        return None


def _cursor_seqnum(cursor: str) -> int:
    """journald's sequence number from a cursor (``s=<seqnum id>;i=<seqnum, hex>;b=...``): systemd
    before 254 prints no ``__SEQNUM`` field, but every cursor carries it."""
    for part in cursor.split(";"):
        key, _, value = part.partition("=")
        if key == "i":
            return int(value, 16)
    raise ValueError(f"a journal cursor without its sequence number: {cursor[:80]!r}")


def is_device(path: Path) -> bool:
    try:
        return stat.S_ISCHR(path.stat().st_mode)
    except OSError:
        return False
