"""The journald fallback: ``journalctl -k -f -o json`` entries become kernel records (journald's
``__SEQNUM`` as the sequence, ``__CURSOR`` to resume after); the agent asks to resume after the
cursor it persisted. A stand-in ``journalctl`` (a script printing the real JSON shape) replaces the
binary, which needs a systemd journal this machine does not have."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from events.node.kmsg_source import JournalSource, journal_record
from tests.waiting import eventually

ENTRY = {
    "__CURSOR": "s=4c1d;i=1f2a;b=6c1f4b5e2b0a4d539b840d2f7c0f3a11;m=1de2a1c;t=5f0;x=9a",
    "__SEQNUM": "7978",
    "__MONOTONIC_TIMESTAMP": "31337010",
    "_SOURCE_MONOTONIC_TIMESTAMP": "31337000",
    "_BOOT_ID": "6c1f4b5e2b0a4d539b840d2f7c0f3a11",
    "_TRANSPORT": "kernel",
    "PRIORITY": "3",
    "MESSAGE": "NVRM: Xid (PCI:0000:5d:00): 79, pid=2211, name=python, GPU has fallen off the bus.",
}


def test_a_journal_entry_is_a_record_with_its_sequence_and_cursor() -> None:
    record = journal_record(json.dumps(ENTRY).encode())
    assert record is not None
    assert (record.seq, record.usec, record.prio, record.cursor) == (7978, 31337000, 3, ENTRY["__CURSOR"])
    assert record.line() == f"[   31.337000] {ENTRY['MESSAGE']}"


def test_a_message_journald_stored_as_bytes_and_a_broken_entry() -> None:
    as_bytes = {**ENTRY, "MESSAGE": list(b"NVRM: caf\xc3\xa9")}
    record = journal_record(json.dumps(as_bytes).encode())
    assert record is not None and record.message == "NVRM: café"
    assert journal_record(b'{"MESSAGE": "no cursor"}') is None
    assert journal_record(b"not json") is None


async def test_the_source_follows_journalctl_and_resumes_after_the_cursor(tmp_path: Path) -> None:
    args_file = tmp_path / "args"
    script = tmp_path / "journalctl"
    entries = "\n".join(json.dumps({**ENTRY, "__SEQNUM": str(7978 + i)}) for i in range(3))
    script.write_text(f'#!/bin/sh\necho "$@" > {args_file}\ncat <<"EOF"\n{entries}\nEOF\nexec sleep 30\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    source = await JournalSource.start(after_cursor="s=4c1d;i=1f29", journalctl=str(script))
    records: list[int] = []
    try:

        async def three() -> bool:
            await source.wait(0.1)
            records.extend(r.seq for r in source.read_available(10))
            return len(records) == 3

        await eventually(three, within_s=10, what="three entries")
    finally:
        await source.close()
    assert records == [7978, 7979, 7980]
    assert args_file.read_text().split() == [
        "-k", "-f", "-o", "json", "--no-pager", "--after-cursor", "s=4c1d;i=1f29",
    ]  # fmt: skip
