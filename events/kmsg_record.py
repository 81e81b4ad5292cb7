"""A GPU fault found in the kernel log: what ``events.kmsg_parser`` makes of driver lines."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

FALLEN_OFF_THE_BUS_XID = 79


class KmsgRecord(BaseModel):
    """One GPU fault found in the kernel log.

    ``xid`` is the SXid code when ``sxid`` is true. Fields after ``raw`` are filled only when the
    line's format carries them.
    """

    model_config = ConfigDict(frozen=True)

    xid: int
    pci_bus_id: str | None = None
    pid: int | None = None
    process: str | None = None
    message: str = ""
    raw: str
    time: datetime | None = None
    host: str | None = None
    uptime_s: float | None = None
    sxid: bool = False
    nvswitch: str | None = None
    caused_by_xid: int | None = None
    recovery_action: str | None = None
    link: int | None = None
    severity: str | None = None
    subcomponent: str | None = None
    fell_off_bus_without_xid: bool = False
    data: str | None = None
    truncated_chars: int = 0
    """Characters of the line beyond ``kmsg_parser.MAX_LINE_CHARS``, not parsed (0: the whole line was read)."""
