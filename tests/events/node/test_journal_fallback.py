"""The node agent's journald fallback end to end: where ``/dev/kmsg`` cannot be read, ``aiops node``
runs ``journalctl -k -f -o json`` from PATH. Here PATH holds a stand-in ``journalctl`` (this machine
has no systemd journal) that prints real journald JSON entries from a file and follows it, honouring
``--after-cursor``: every field is a string, a message that is not UTF-8 is a byte array, entries of
other units take sequence numbers between the kernel's, and systemd before 254 prints no
``__SEQNUM`` (the cursor's ``i=`` carries it). A restarted agent resumes after its persisted cursor:
nothing lost, nothing sent twice, no journald gap counted as a missed kernel record."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest

from aiops.nats_server import EmbeddedNats
from events.node.agent import NodeAgent
from tests.events.node.test_node_agent import BOOT, Running, config, server, stored_lines  # noqa: F401
from tests.waiting import eventually

pytestmark = pytest.mark.slow

BOOT_HEX = BOOT.replace("-", "")
SEQNUM_ID = "739ad463348b4ceca5a9e69c95a3c93f"
XID = "NVRM: Xid (PCI:0000:3b:00): 79, pid=2211, name=python, GPU has fallen off the bus."

STAND_IN = """#!{python}
# A stand-in for journalctl -k -f -o json [--after-cursor C | -b]: prints the entries of {journal}
# (one JSON object a line, as journald prints them) after the cursor, then follows the file.
import json, pathlib, sys, time
args = sys.argv[1:]
with open({calls!r}, "a") as calls:
    calls.write(json.dumps(args) + "\\n")
after = args[args.index("--after-cursor") + 1] if "--after-cursor" in args else None
journal, done, printing = pathlib.Path({journal!r}), 0, after is None
while True:
    lines = journal.read_text().splitlines()
    for line in lines[done:]:
        if printing:
            print(line, flush=True)
        elif json.loads(line)["__CURSOR"] == after:
            printing = True
    done = len(lines)
    if "-f" not in args:
        break
    time.sleep(0.05)
"""


def entry(seq: int, message: str | bytes, *, with_seqnum: bool = True, usec: int | None = None) -> str:
    """One kernel entry as ``journalctl -o json`` prints it."""
    mono = usec if usec is not None else 4_000_000 + seq * 1_000
    cursor = (
        f"s={SEQNUM_ID};i={seq:x};b={BOOT_HEX};m={mono:x};t={1_765_000_000_000_000 + seq:x};x={seq * 7919:x}"
    )
    fields: dict[str, object] = {
        "__CURSOR": cursor,
        "__REALTIME_TIMESTAMP": str(1_765_000_000_000_000 + seq),
        "__MONOTONIC_TIMESTAMP": str(mono + 15),
        "_BOOT_ID": BOOT_HEX,
        "_MACHINE_ID": "2a8e9d0c41f34c76b1e5c3f2a9d8e7b6",
        "_HOSTNAME": "gpu-node-7",
        "_TRANSPORT": "kernel",
        "SYSLOG_FACILITY": "0",
        "SYSLOG_IDENTIFIER": "kernel",
        "PRIORITY": "3" if "Xid" in str(message) else "6",
        "_SOURCE_MONOTONIC_TIMESTAMP": str(mono),
        "MESSAGE": list(message) if isinstance(message, bytes) else message,
    }
    if "Xid" in str(message):
        fields |= {
            "_KERNEL_SUBSYSTEM": "pci",
            "_KERNEL_DEVICE": "+pci:0000:3b:00.0",
            "_UDEV_SYSNAME": "0000:3b:00.0",
        }
    if with_seqnum:
        fields |= {"__SEQNUM": str(seq), "__SEQNUM_ID": SEQNUM_ID}
    return json.dumps(fields)


def stand_in(tmp: Path) -> tuple[Path, Path, Path]:
    """A directory for PATH holding ``journalctl``, its journal file and its log of calls."""
    bin_dir, journal, calls = tmp / "bin", tmp / "journal.jsonl", tmp / "calls.jsonl"
    bin_dir.mkdir()
    journal.write_text("")
    script = bin_dir / "journalctl"
    script.write_text(STAND_IN.format(python=sys.executable, journal=str(journal), calls=str(calls)))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return bin_dir, journal, calls


def append(journal: Path, *entries: str) -> None:
    with journal.open("a") as f:
        f.write("".join(e + "\n" for e in entries))


async def test_the_journal_fallback_ships_every_kernel_entry_once_across_an_agent_restart(
    server: EmbeddedNats,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bin_dir, journal, calls = stand_in(tmp_path)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin")
    # /dev/kmsg unreadable (here: absent): the agent falls back to journalctl from PATH.
    cfg = config(server.url, tmp_path, inventory=False)
    assert not (tmp_path / "kmsg").exists()
    # Kernel entries between other units' (journald numbers them all): 0x1a0, 0x1a3, ...
    append(
        journal,
        entry(0x1A0, "Linux version 6.8.0-45-generic (buildd@lcy02-amd64-075)"),
        entry(0x1A3, "pci 0000:3b:00.0: [10de:2330] type 00 class 0x030200"),
        entry(0x1A4, XID),
        entry(0x1B0, b"NVRM: GPU at PCI:0000:3b:00: GPU-\xff\xfe serial \xc3\xa9"),
        entry(0x1B1, "nvidia-nvswitch0: SXid (PCI:0000:05:00.0): 20034", with_seqnum=False),
    )
    first = Running(NodeAgent(cfg))
    await eventually(lambda: first.agent.shipped == 5, within_s=20, what="the five entries shipped")
    assert first.agent.source.where.startswith("journalctl -k -f -o json")
    await first.close()
    cursor = first.agent.spool.cursor
    assert cursor.journal_cursor is not None and ";i=1b1;" in cursor.journal_cursor

    # The kernel logs on while the agent is down; the restarted agent asks for what follows its cursor.
    append(
        journal,
        entry(0x1C0, XID),
        entry(0x1C2, "NVRM: Xid (PCI:0000:3b:00): 94, Contained", with_seqnum=False),
    )
    second = Running(NodeAgent(cfg))
    await eventually(lambda: second.agent.shipped == 2, within_s=20, what="the two new entries shipped")
    append(journal, entry(0x1C9, "usb 1-1: new high-speed USB device"))  # followed while running
    await eventually(lambda: second.agent.shipped == 3, within_s=20, what="the followed entry shipped")
    await second.close()

    stored = await stored_lines(server.url)
    assert [msg_id for msg_id, _ in stored] == [
        f"{BOOT}:{seq}" for seq in (0x1A0, 0x1A3, 0x1A4, 0x1B0, 0x1B1, 0x1C0, 0x1C2, 0x1C9)
    ]
    lines = [line for _, line in stored]
    assert lines[2] == f"[    4.420000] {XID}"
    assert lines[3].endswith("NVRM: GPU at PCI:0000:3b:00: GPU-\ufffd\ufffd serial é")  # bytes, decoded
    assert second.agent.duplicates == 0
    assert (second.agent.spool.cursor.missed, second.agent.spool.cursor.gaps) == (0, 0)
    invocations = [json.loads(line) for line in calls.read_text().splitlines()]
    assert invocations[0] == ["-k", "-f", "-o", "json", "--no-pager", "-b"]
    assert invocations[1][-2:] == ["--after-cursor", cursor.journal_cursor]
