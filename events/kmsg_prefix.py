"""The text before the driver message in a kernel log line: wall time, host, uptime, NVSwitch device.

Every prefix style met in the wild: none, dmesg ``[ 1234.567890]``, dmesg -T
``[Fri Aug 30 11:43:09 2024]``, journald/syslog short-iso ``2026-11-29T06:50:01.123456+00:00 host
kernel:``, classic syslog ``Aug 30 11:43:09 host kernel:``, bare ``kernel:``, ``/dev/kmsg`` records
(``6,1234,5678,-;``) and a syslog priority (``<4>``).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

# Prefixes, consumed left to right; each is optional.
_SYSLOG_PRI = re.compile(r"\s*<\d{1,3}>")
_DEVKMSG = re.compile(r"\s*\d{1,3},\d{1,20},(?P<us>\d{1,20}),[^;]*;")
_ISO_TIME = re.compile(
    r"\s*(?P<ts>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})?)\s+"
)
_MONTHS = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"
_MONTH_NUMBER = {name: i for i, name in enumerate(_MONTHS.split("|"), start=1)}
_CLASSIC_TIME = re.compile(
    rf"\s*(?P<mon>{_MONTHS})\s+(?P<day>\d{{1,2}})\s+(?P<h>\d{{2}}):(?P<m>\d{{2}}):(?P<s>\d{{2}})"
    r"(?:\.(?P<frac>\d{1,9}))?\s+"
)
_HOST_PROGRAM = re.compile(r"(?P<host>[^\s:\[\]]+)\s+[^\s:\[\]]+(?:\[\d+\])?:\s*")
_DMESG_T = re.compile(
    rf"\[\s*(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)\s+(?P<mon>{_MONTHS})\s+(?P<day>\d{{1,2}})\s+"
    r"(?P<h>\d{2}):(?P<m>\d{2}):(?P<s>\d{2})\s+(?P<year>\d{4})\s*\]"
)
_UPTIME = re.compile(r"\[\s*(?P<up>\d{1,12}\.\d{1,9})\s*\]")
_NVSWITCH = re.compile(r"nvidia-nvswitch\d{1,4}")


@dataclass(frozen=True, slots=True)
class Prefix:
    """What a line's prefix tells (each None when its format carries none)."""

    time: datetime | None = None
    host: str | None = None
    uptime_s: float | None = None
    nvswitch: str | None = None


# Storms repeat the same prefix (dmesg -T has one-second resolution); building datetimes is the
# costliest part of a record, so recent prefixes are remembered. (A classic syslog time without a
# year is resolved against the clock once per distinct prefix; its date fixes the year anyway.)
@functools.lru_cache(maxsize=4096)
def parse_prefix(prefix: str, default_year: int | None, tz: tzinfo) -> Prefix:
    """What the text before the driver message tells: wall time, host, uptime, NVSwitch device."""
    pos = 0
    uptime: float | None = None
    when: datetime | None = None
    host: str | None = None

    if m := _SYSLOG_PRI.match(prefix, pos):
        pos = m.end()
    if m := _DEVKMSG.match(prefix, pos):
        uptime = int(m["us"]) / 1_000_000
        pos = m.end()

    wall_clock = False
    if m := _ISO_TIME.match(prefix, pos):
        when = _iso_time(m["ts"], tz)
        wall_clock = True
        pos = m.end()
    elif m := _CLASSIC_TIME.match(prefix, pos):
        when = _classic_time(m, default_year, tz)
        wall_clock = True
        pos = m.end()
    # A host is only named after a syslog/journald time; "kernel:" alone carries none.
    if wall_clock and (m := _HOST_PROGRAM.match(prefix, pos)):
        host = m["host"]
        pos = m.end()

    rest = prefix[pos:]
    if m := _DMESG_T.search(rest):
        # A syslog/journald time was stamped when the line was logged; prefer it to dmesg's
        # reconstruction from uptime, which drifts across suspend.
        if when is None:
            when = _dmesg_t_time(m, tz)
    elif m := _UPTIME.search(rest):
        uptime = float(m["up"])

    nvswitch = m.group(0) if (m := _NVSWITCH.search(rest)) else None
    return Prefix(time=when, host=host, uptime_s=uptime, nvswitch=nvswitch)


def _iso_time(text: str, tz: tzinfo) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text.replace(",", "."))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=tz)


def _classic_time(m: re.Match[str], default_year: int | None, tz: tzinfo) -> datetime | None:
    micro = int((m["frac"] or "0")[:6].ljust(6, "0"))
    try:
        if default_year is not None:
            return _wall_time(default_year, m, micro, tz)
        now = datetime.now(tz)
        when = _wall_time(now.year, m, micro, tz)
        # The format has no year: a December line read in January belongs to last year.
        if when - now > timedelta(days=1):
            when = when.replace(year=now.year - 1)
        return when
    except ValueError:  # 30 Feb, 25:00:00, 29 Feb in a common year
        return None


def _dmesg_t_time(m: re.Match[str], tz: tzinfo) -> datetime | None:
    try:
        return _wall_time(int(m["year"]), m, 0, tz)
    except ValueError:
        return None


def _wall_time(year: int, m: re.Match[str], micro: int, tz: tzinfo) -> datetime:
    """From a match with ``mon``, ``day``, ``h``, ``m``, ``s`` groups; raises ValueError."""
    month = _MONTH_NUMBER[m["mon"]]
    return datetime(year, month, int(m["day"]), int(m["h"]), int(m["m"]), int(m["s"]), micro, tzinfo=tz)


# --- multi-line state -----------------------------------------------------------------------------
