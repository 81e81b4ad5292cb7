r"""Kernel log lines -> NVIDIA driver fault records (Xid, NVSwitch SXid, GPU fallen off the bus).

One :class:`KmsgParser` per log source (one node's stream): some records span lines (the
three-line "fallen off the bus" report, SXid with its ``Data``/``Severity`` continuation lines),
so the parser keeps a little state between :meth:`KmsgParser.feed` calls. Every prefix style met in
the wild is accepted (``events.kmsg_prefix``); the driver messages' patterns are
``events.kmsg_formats``, the record ``events.kmsg_record``.

The parser never raises on input: lines that are not GPU faults and undecodable bytes give ``[]``.
Irrelevant lines are rejected by a substring test before any regex runs.

Per-line work is bounded, whatever the input: a line is parsed on its first ``MAX_LINE_CHARS``
characters (the kernel's own records are under 1 KB) and a record from a longer line says how many
characters were cut (``truncated_chars``); and every pattern is linear in the line's length — no
pattern has two adjacent parts that can match the same run of characters (the ``name=`` field was
``[^,]*?\s*(?:,|$)``, quadratic on a long run of spaces), and patterns that ``search`` can only
start at a literal that cannot repeat inside what they scan. ``tests/events/test_kmsg_linear.py``
checks the patterns' shape; ``evals/benchmarks/kmsg_worst_line.py`` measures adversarial lines.
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, tzinfo

from events.kmsg_formats import (
    FELL_OFF_1,
    FELL_OFF_2,
    FELL_OFF_3,
    FELL_OFF_AT,
    FELL_OFF_COLON,
    FELL_OFF_ONE_LINE,
    LAST_PARENS,
    NAME,
    NVLINK5,
    PID,
    PREVIOUS_XID,
    SXID,
    SXID_DATA,
    SXID_LINK,
    SXID_SEVERITY,
    SXID_SEVERITY_LINE,
    XID,
    XID74_LINK,
    normalise_pci_bus_id,
)
from events.kmsg_prefix import Prefix, parse_prefix
from events.kmsg_record import FALLEN_OFF_THE_BUS_XID, KmsgRecord

__all__ = [
    "MAX_LINE_CHARS",
    "KmsgParser",
    "KmsgRecord",
    "ParserState",
    "normalise_pci_bus_id",
    "parse_text",
]

log = logging.getLogger(__name__)

MAX_LINE_CHARS = 4096
"""A line is parsed on its first 4,096 characters; the rest is counted in ``truncated_chars``.
(The kernel's printk records are at most 1 KB; the prefixes syslog adds are short.)"""

SAME_FAULT_S = 600.0
"""A GPU that fell off the bus is reported by several lines (the Xid 79, the one- or three-line
report); within this many seconds per bus id they are one fault, one record."""


@dataclass(slots=True)
class _FellOffSequence:
    """Lines 1..2 of "The NVIDIA GPU <pci> / (PCI ID: ...) installed in this system has / fallen off..."."""

    pci_bus_id: str | None
    prefix: Prefix
    lines: list[str]
    bodies: list[str]


@dataclass(slots=True)
class _HeldSxid:
    """An SXid waiting for its ``Data {...}`` / ``Severity ...`` continuation lines."""

    record: KmsgRecord
    code: int
    pci: str | None
    lines: list[str]
    data: str | None = None
    severity_detail: list[str] = field(default_factory=list)

    def release(self) -> KmsgRecord:
        message = "; ".join([self.record.message, *self.severity_detail]) if self.severity_detail else None
        update: dict[str, object] = {"raw": "\n".join(self.lines), "data": self.data}
        if message is not None:
            update["message"] = message
        if self.record.severity is None and self.severity_detail:
            update["severity"] = self.severity_detail[0]
        return self.record.model_copy(update=update)


# --- parser -----------------------------------------------------------------------------------------


ParserState = tuple["_FellOffSequence | None", "_HeldSxid | None"]
"""A parser's multi-line state, as ``KmsgParser.state`` returns it (a copy)."""


class KmsgParser:
    """Stateful parser for one log source (one node's stream); not thread-safe.

    ``default_year`` is the year for classic syslog times, which carry none (default: the current
    year, or the previous one for a date more than a day ahead). ``default_tz`` is the zone of
    prefix times that name none (dmesg -T, classic syslog); nodes should log in UTC.
    """

    def __init__(self, *, default_year: int | None = None, default_tz: tzinfo = UTC) -> None:
        self._default_year = default_year
        self._tz = default_tz
        self._fell_off: _FellOffSequence | None = None
        self._held: _HeldSxid | None = None
        self._cut = 0  # characters cut from the line being parsed
        self._off_bus: dict[str, float] = {}
        """bus id -> when (wall seconds, else uptime) its GPU was last reported off the bus."""

    @property
    def busy(self) -> bool:
        """True while a multi-line record is waiting for its next lines."""
        return self._fell_off is not None or self._held is not None

    def state(self) -> ParserState:
        """A copy of the multi-line state, for ``restore`` (a consumer whose batch failed)."""
        return copy.deepcopy((self._fell_off, self._held))

    def restore(self, state: ParserState | None) -> None:
        """Go back to a ``state()``; None is the idle state."""
        self._fell_off, self._held = copy.deepcopy(state) if state is not None else (None, None)

    def feed(self, line: str | bytes, *, dropped: int = 0) -> list[KmsgRecord]:
        """Parse one line; returns the records it completes (usually zero or one). ``dropped``
        counts characters of the line a reader already cut (they add to ``truncated_chars``)."""
        try:
            if isinstance(line, bytes):
                line = line.decode("utf-8", "replace")
            line = line.rstrip("\r\n")  # a line as read from a file keeps its newline
            if "\n" not in line:
                return self._feed_line(line, dropped)
            out: list[KmsgRecord] = []
            for part in line.split("\n"):
                out += self._feed_line(part)
            return out
        except Exception:  # a parser bug must never stop a node's log stream
            log.exception("kmsg parser failed on %r; multi-line state reset", line[:200])
            self._fell_off = None
            self._held = None
            return []

    def flush(self) -> list[KmsgRecord]:
        """Release a held SXid (end of stream, idle). An unfinished three-line report is kept: its
        next lines may simply not have arrived yet (a consumer that caught up between them), and
        any line that does not continue it drops it."""
        return self._release_held()

    # -- per line --

    def _feed_line(self, line: str, dropped: int = 0) -> list[KmsgRecord]:
        line = line.rstrip("\r")
        self._cut = max(0, len(line) - MAX_LINE_CHARS) + dropped
        if self._cut:
            line = line[:MAX_LINE_CHARS]
        if "NVRM" not in line and "SXid" not in line:
            if self._held is None and self._fell_off is None:
                return []  # the fast path: most kernel log lines end here
            self._fell_off = None
            return self._release_held()

        # Anchored at the driver prefix that comes first: text after it (a process name after
        # ``name=``) is data, even when it looks like another driver message.
        sxid_at = line.find("SXid (")
        nvrm_at = line.find("NVRM:")
        if sxid_at >= 0 and (nvrm_at < 0 or sxid_at < nvrm_at):
            self._fell_off = None
            return self._on_sxid(line, sxid_at)

        out = self._release_held()
        if nvrm_at < 0:
            self._fell_off = None
            return out

        if self._fell_off is not None:
            done = self._continue_fell_off(line, nvrm_at)
            if done is not None:
                out += done
                return out

        if m := XID.match(line, nvrm_at):
            out += self._once(self._xid_record(m, line, nvrm_at))
        elif m := (
            FELL_OFF_AT.match(line, nvrm_at)
            or FELL_OFF_COLON.match(line, nvrm_at)
            or FELL_OFF_ONE_LINE.match(line, nvrm_at)
        ):
            prefix = self._prefix(line[:nvrm_at])
            out += self._once(
                self._fell_off_record(
                    normalise_pci_bus_id(m["pci"]), prefix, [line], [line[nvrm_at + 6 :].strip()]
                )
            )
        elif m := FELL_OFF_1.match(line, nvrm_at):
            self._fell_off = _FellOffSequence(
                pci_bus_id=normalise_pci_bus_id(m["pci"]),
                prefix=self._prefix(line[:nvrm_at]),
                lines=[line],
                bodies=[line[nvrm_at + 6 :].strip()],
            )
        return out

    def _continue_fell_off(self, line: str, nvrm_at: int) -> list[KmsgRecord] | None:
        """Advance the three-line report; ``None`` means the line is not part of it (state dropped)."""
        seq = self._fell_off
        assert seq is not None
        body = line[nvrm_at + 6 :].strip()
        if len(seq.lines) == 1 and FELL_OFF_2.match(line, nvrm_at):
            seq.lines.append(line)
            seq.bodies.append(body)
            return []
        if len(seq.lines) == 2 and FELL_OFF_3.match(line, nvrm_at):
            self._fell_off = None
            return self._once(
                self._fell_off_record(seq.pci_bus_id, seq.prefix, [*seq.lines, line], [*seq.bodies, body])
            )
        self._fell_off = None
        return None

    def _on_sxid(self, line: str, at: int) -> list[KmsgRecord]:
        m = SXID.match(line, at)
        if m is None:
            return self._release_held()
        code = int(m["code"])
        pci = normalise_pci_bus_id(m["pci"])
        rest: str = m["rest"].rstrip()
        data = SXID_DATA.match(rest)
        is_severity = data is None and SXID_SEVERITY_LINE.match(rest) is not None
        if data is not None or is_severity:
            held = self._held
            if held is not None and held.code == code and held.pci == pci:
                held.lines.append(line)
                if data is not None:
                    held.data = data["data"]
                else:
                    held.severity_detail.append(rest)
                return []
            # A continuation whose main line was lost (ring buffer wrap): report the SXid it
            # names, holding it so its other continuation lines join it.
            out = self._release_held()
            prefix = self._prefix(line[:at])
            record = KmsgRecord(
                xid=code,
                pci_bus_id=pci,
                message="main line lost; " + rest,
                raw=line,
                time=prefix.time,
                host=prefix.host,
                uptime_s=prefix.uptime_s,
                sxid=True,
                nvswitch=prefix.nvswitch,
            )
            self._held = _HeldSxid(record=record, code=code, pci=pci, lines=[line])
            if data is not None:
                self._held.data = data["data"]
            else:
                self._held.severity_detail.append(rest)
            return out

        out = self._release_held()
        prefix = self._prefix(line[:at])
        severity = SXID_SEVERITY.match(rest)
        link = SXID_LINK.search(rest)
        record = KmsgRecord(
            xid=code,
            pci_bus_id=pci,
            message=rest,
            raw=line,
            time=prefix.time,
            host=prefix.host,
            uptime_s=prefix.uptime_s,
            sxid=True,
            nvswitch=prefix.nvswitch,
            link=int(link["link"]) if link else None,
            severity=severity["sev"] if severity else None,
            truncated_chars=self._cut,
        )
        self._held = _HeldSxid(record=record, code=code, pci=pci, lines=[line])
        return out

    def _once(self, record: KmsgRecord) -> list[KmsgRecord]:
        """One GPU off the bus is one record: a second report of it (the Xid 79 line and the
        driver's fallen-off report) within ``SAME_FAULT_S`` per bus id is dropped."""
        if record.xid != FALLEN_OFF_THE_BUS_XID or record.sxid or record.pci_bus_id is None:
            return [record]
        when = record.time.timestamp() if record.time is not None else record.uptime_s
        last = self._off_bus.get(record.pci_bus_id)
        self._off_bus[record.pci_bus_id] = when if when is not None else (last or 0.0)
        if len(self._off_bus) > 64:  # a node has a handful of GPUs; never grow without bound
            self._off_bus.pop(next(iter(self._off_bus)))
        if last is not None and (when is None or abs(when - last) <= SAME_FAULT_S):
            return []
        return [record]

    def _release_held(self) -> list[KmsgRecord]:
        held, self._held = self._held, None
        return [] if held is None else [held.release()]

    # -- records --

    def _prefix(self, text: str) -> Prefix:
        if not text or text.isspace():
            return Prefix()
        return parse_prefix(text, self._default_year, self._tz)

    def _xid_record(self, m: re.Match[str], line: str, at: int) -> KmsgRecord:
        code = int(m["code"])
        rest: str = m["rest"].rstrip()
        pid: int | None = None
        process: str | None = None
        pos = 0
        if pm := PID.match(rest):
            pid = int(pm["pid"]) if pm["pid"] else None
            pos = pm.end()
        if nm := NAME.match(rest, pos):
            name = nm["name"].strip().strip("'\"")
            process = None if name in ("", "<unknown>") else name
            pos = nm.end()
        message = rest[pos:]

        caused_by: int | None = None
        recovery: str | None = None
        link: int | None = None
        severity: str | None = None
        subcomponent: str | None = None
        if code == 45 and (cm := PREVIOUS_XID.search(message)):
            caused_by = int(cm["code"])
        elif code == 154 and (rm := LAST_PARENS.search(message)):
            recovery = rm["text"].strip() or None
        elif code == 74 and (lm := XID74_LINK.search(message)):
            link = int(lm["link"])
        # NVLink5 (144-150) layout, recognised by shape so later codes in the same layout work too.
        if " XC" in message and (nv := NVLINK5.match(message)):
            subcomponent = nv["sub"]
            severity = nv["sev"]
            link = int(nv["link"])

        prefix = self._prefix(line[:at])
        return KmsgRecord(
            xid=code,
            pci_bus_id=normalise_pci_bus_id(m["pci"]),
            pid=pid,
            process=process,
            message=message,
            raw=line,
            time=prefix.time,
            host=prefix.host,
            uptime_s=prefix.uptime_s,
            caused_by_xid=caused_by,
            recovery_action=recovery,
            link=link,
            severity=severity,
            subcomponent=subcomponent,
            truncated_chars=self._cut,
        )

    @staticmethod
    def _fell_off_record(pci: str | None, prefix: Prefix, lines: list[str], bodies: list[str]) -> KmsgRecord:
        return KmsgRecord(
            xid=FALLEN_OFF_THE_BUS_XID,
            pci_bus_id=pci,
            message=" ".join(bodies),
            raw="\n".join(lines),
            time=prefix.time,
            host=prefix.host,
            uptime_s=prefix.uptime_s,
            fell_off_bus_without_xid=True,
        )


def parse_text(
    text: str | bytes, *, default_year: int | None = None, default_tz: tzinfo = UTC
) -> list[KmsgRecord]:
    """Parse a whole log (e.g. ``dmesg -T`` output): feed every line, then flush."""
    parser = KmsgParser(default_year=default_year, default_tz=default_tz)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    out: list[KmsgRecord] = []
    for line in text.split("\n"):
        out += parser.feed(line)
    return out + parser.flush()
