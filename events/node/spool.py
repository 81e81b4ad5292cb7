"""The node agent's on-disk buffer and cursor: what was read from the kernel, in order, until NATS has it.

Two files in the state directory:

- ``spool.jsonl``: one JSON object per record read and not yet confirmed by JetStream
  (``{"b": boot id, "s": seq, "l": line}``), appended in kernel order;
- ``state.json``: the cursor — the boot id and the last sequence read (spooled or dropped), the
  byte offset in the spool up to which JetStream has acknowledged, journald's cursor when reading
  the journal, and the counts of lines dropped and missed.

The spool is bounded (``max_lines``): while it is full (a long NATS outage), records are dropped and
counted, never silently. A restarted agent skips every record up to the cursor (same boot) and
ships what the spool still holds, so it neither loses nor repeats a line; JetStream's
``Nats-Msg-Id`` (boot id + sequence) absorbs the one batch that may have been sent but not marked.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from events.node.kmsg_source import KernelRecord

log = logging.getLogger(__name__)


class Cursor(BaseModel):
    boot_id: str = ""
    last_seq: int = -1
    shipped_offset: int = 0
    journal_cursor: str | None = None
    dropped: int = 0
    """Records read while the spool was full: lost, and reported."""
    missed: int = 0
    """Records the kernel overwrote before they were read (sequence gaps)."""
    gaps: int = 0


@dataclass(frozen=True)
class Spooled:
    boot_id: str
    seq: int
    line: str
    end: int
    """Byte offset in the spool just past this entry."""

    @property
    def msg_id(self) -> str:
        return f"{self.boot_id}:{self.seq}"


class Spool:
    def __init__(self, state_dir: Path, *, max_lines: int = 100_000) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.max_lines = max_lines
        self._state_path = state_dir / "state.json"
        self._spool_path = state_dir / "spool.jsonl"
        self.cursor = Cursor()
        if self._state_path.exists():
            self.cursor = Cursor.model_validate_json(self._state_path.read_bytes())
        self._spool_path.touch()
        self.pending = 0
        end = self.cursor.shipped_offset
        # Entries written after the last state write (a crash in between) still count as read.
        for entry in self._read_from(self.cursor.shipped_offset, None):
            self.pending += 1
            end = entry.end
            if entry.boot_id == self.cursor.boot_id:
                self.cursor.last_seq = max(self.cursor.last_seq, entry.seq)
        self._out = self._spool_path.open("ab")
        if self._spool_path.stat().st_size > end:
            self._out.truncate(end)  # the torn tail of a crash mid-write

    def start_boot(self, boot_id: str) -> bool:
        """Set the boot the records come from; True when it is a new one (sequence starts over)."""
        if boot_id == self.cursor.boot_id:
            return False
        if self.cursor.boot_id:
            log.info(
                "new boot %s (was %s): reading the kernel log from its start", boot_id, self.cursor.boot_id
            )
        self.cursor.boot_id = boot_id
        self.cursor.last_seq = -1
        self.cursor.journal_cursor = None
        self._save()
        return True

    def append(self, records: list[KernelRecord], *, gaps_are_losses: bool = True) -> int:
        """Spool the records after the cursor, in order; returns how many were new. Sequence gaps
        are counted as missed (unless the sequence is not the kernel's: ``gaps_are_losses``),
        records that do not fit as dropped."""
        lines: list[bytes] = []
        new = 0
        for rec in records:
            if rec.seq <= self.cursor.last_seq:
                continue  # read before (a restart re-reads the ring buffer from its start)
            if gaps_are_losses and self.cursor.last_seq >= 0 and rec.seq > self.cursor.last_seq + 1:
                missing = rec.seq - self.cursor.last_seq - 1
                self.cursor.gaps += 1
                self.cursor.missed += missing
                log.warning(
                    "kernel log sequence gap: %d records between %d and %d were overwritten before they were read",
                    missing,
                    self.cursor.last_seq,
                    rec.seq,
                )
            self.cursor.last_seq = rec.seq
            if rec.cursor is not None:
                self.cursor.journal_cursor = rec.cursor
            new += 1
            if self.pending + len(lines) >= self.max_lines:
                if self.cursor.dropped % 1000 == 0:
                    log.warning(
                        "spool full (%d lines, NATS unreachable?): dropping kernel log lines", self.max_lines
                    )
                self.cursor.dropped += 1
                continue
            entry = {"b": self.cursor.boot_id, "s": rec.seq, "l": rec.line()}
            lines.append(json.dumps(entry, separators=(",", ":")).encode() + b"\n")
        if lines:
            self._out.write(b"".join(lines))
            self._out.flush()
            os.fsync(self._out.fileno())
            self.pending += len(lines)
        if new:
            self._save()
        return new

    def peek(self, limit: int) -> list[Spooled]:
        """The oldest entries JetStream has not acknowledged yet, in order."""
        return list(self._read_from(self.cursor.shipped_offset, limit))

    def mark_shipped(self, entries: list[Spooled]) -> None:
        if not entries:
            return
        self.cursor.shipped_offset = entries[-1].end
        self.pending -= len(entries)
        if self.pending == 0:
            # All shipped: start the spool over instead of letting it grow.
            self._out.truncate(0)
            self._out.seek(0)
            self.cursor.shipped_offset = 0
        self._save()

    def close(self) -> None:
        self._out.close()

    def _read_from(self, offset: int, limit: int | None) -> list[Spooled]:
        out: list[Spooled] = []
        with self._spool_path.open("rb") as f:
            f.seek(offset)
            at = offset
            for raw in f:
                if not raw.endswith(b"\n"):
                    break  # torn last write of a crash: never acknowledged, read again
                at += len(raw)
                entry = json.loads(raw)
                out.append(Spooled(entry["b"], int(entry["s"]), entry["l"], at))
                if limit is not None and len(out) >= limit:
                    break
        return out

    def _save(self) -> None:
        tmp = self._state_path.with_suffix(".tmp")
        tmp.write_bytes(self.cursor.model_dump_json().encode())
        os.replace(tmp, self._state_path)
