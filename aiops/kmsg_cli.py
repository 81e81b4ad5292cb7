"""``aiops kmsg ...``: kernel log tools."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, BinaryIO

import typer

from events.kmsg_parser import MAX_LINE_CHARS, KmsgParser, KmsgRecord
from skills.catalog import load_catalog, resolve_platform_action, sxid_info

__all__ = ["kmsg_app", "record_to_json"]

kmsg_app = typer.Typer(help="Kernel log tools.", no_args_is_help=True)

JsonScalar = str | int | float | bool | None


def record_to_json(record: KmsgRecord) -> dict[str, JsonScalar]:
    """One parsed record with the catalog's reading of it, as a flat JSON object.

    The core keys are always present (null when unknown); decoded extras appear only when the line
    carried them. ``platform_action`` is resolved: for Xid 154 it is the action its text names.
    """
    info = sxid_info(record.xid) if record.sxid else load_catalog().info_or_unknown(record.xid)
    out: dict[str, JsonScalar] = {
        "xid": record.xid,
        "pci_bus_id": record.pci_bus_id,
        "pid": record.pid,
        "process": record.process,
        "message": record.message,
        "time": record.time.isoformat() if record.time else None,
        "host": record.host,
        "mnemonic": info.mnemonic,
        "meaning": info.meaning,
        "level": info.level.value,
        "nvidia_bucket": info.nvidia_bucket.value,
        "recommended_action": info.recommended_action,
        "platform_action": resolve_platform_action(info, record.recovery_action).value,
    }
    extras: dict[str, JsonScalar] = {
        "caused_by_xid": record.caused_by_xid,
        "recovery_action": record.recovery_action,
        "link": record.link,
        "severity": record.severity,
        "subcomponent": record.subcomponent,
        "nvswitch": record.nvswitch,
        "data": record.data,
        "uptime_s": record.uptime_s,
        "truncated_chars": record.truncated_chars or None,
    }
    out.update({key: value for key, value in extras.items() if value is not None})
    if record.sxid:
        out["sxid"] = True
    if record.fell_off_bus_without_xid:
        out["fell_off_bus_without_xid"] = True
    return out


@kmsg_app.command("parse")
def parse(
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            exists=True,
            dir_okay=False,
            readable=True,
            help="Read this file instead of stdin.",
        ),
    ] = None,
    pretty: Annotated[bool, typer.Option("--pretty", help="Indent each JSON object.")] = False,
    year: Annotated[
        int | None,
        typer.Option("--year", help="Year for classic syslog times, which carry none (default: current)."),
    ] = None,
) -> None:
    """Find GPU faults in kernel log text and print one JSON object per event.

    Input: `dmesg`, `dmesg -T`, `journalctl -k` or syslog text, on stdin or from --file.

    Recognises NVIDIA Xid and NVSwitch SXid lines and "fallen off the bus" reports.

    Each event carries the Xid catalog's meaning and action. Exits 0 even when nothing is found.
    """
    parser = KmsgParser(default_year=year)
    indent = 2 if pretty else None
    if file is None:
        # Bytes, not text: a stray invalid byte in the kernel log must not abort the read.
        _print_events(typer.get_binary_stream("stdin"), parser, indent)
        return
    with file.open("rb") as stream:
        _print_events(stream, parser, indent)


READ_LIMIT = 4 * MAX_LINE_CHARS
"""Bytes of a line read at most (UTF-8 is up to 4 bytes a character); the rest is skipped, counted."""


def bounded_lines(stream: BinaryIO, limit: int = READ_LIMIT) -> Iterator[tuple[bytes, int]]:
    """Lines of ``stream`` cut to ``limit`` bytes, with how many bytes were skipped: a line with
    no end (a binary file, a runaway writer) never has to fit in memory. (The skipped part is
    counted in bytes: it is never decoded.)"""
    while head := stream.readline(limit):
        skipped = 0
        if len(head) == limit and not head.endswith(b"\n"):
            while rest := stream.readline(limit):
                if rest.endswith(b"\n"):
                    skipped += len(rest) - 1
                    break
                skipped += len(rest)
        yield head, skipped


def _print_events(stream: BinaryIO, parser: KmsgParser, indent: int | None) -> None:
    for line, skipped in bounded_lines(stream):
        for record in parser.feed(line, dropped=skipped):
            typer.echo(json.dumps(record_to_json(record), indent=indent, ensure_ascii=False))
    for record in parser.flush():
        typer.echo(json.dumps(record_to_json(record), indent=indent, ensure_ascii=False))
