from __future__ import annotations

import random
import re
from datetime import UTC, datetime

import pytest

from fleet import SUPPORTED_XIDS, XID_EFFECTS, RecoveryAction, journal_line, xid_pci
from fleet.kernel_log import XidContext, fallen_off_bus_three_lines, xid_messages

PREFIX = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}\+00:00 node-001 kernel: NVRM: ")
XID_LINE = re.compile(r"^NVRM: Xid \(PCI:0000:5d:00\): (?P<xid>\d+), ")


def _ctx(
    *,
    pid: int | None = None,
    process: str | None = None,
    caused_by: int | None = None,
    recovery_action: RecoveryAction = "GPU Reset Required",
) -> XidContext:
    return XidContext(
        pci_bus_id="0000:5d:00.0",
        gpu_index=3,
        rng=random.Random(0),
        pid=pid,
        process=process,
        caused_by=caused_by,
        recovery_action=recovery_action,
    )


def test_a_journal_line_has_the_short_iso_precise_prefix() -> None:
    at = datetime(2026, 11, 29, 6, 50, 1, 123456, tzinfo=UTC)
    assert (
        journal_line(at, "node-001", "NVRM: x") == "2026-11-29T06:50:01.123456+00:00 node-001 kernel: NVRM: x"
    )


def test_the_xid_line_drops_the_pci_function() -> None:
    assert xid_pci("0000:18:00.0") == "0000:18:00"
    assert xid_pci("0000:18:00") == "0000:18:00"


@pytest.mark.parametrize("xid", sorted(SUPPORTED_XIDS))
def test_every_supported_xid_prints_an_nvrm_xid_line_with_its_code(xid: int) -> None:
    messages = xid_messages(xid, _ctx())
    match = XID_LINE.match(messages[0])
    assert match is not None, messages[0]
    assert int(match["xid"]) == xid


def test_every_supported_xid_has_an_effect() -> None:
    assert set(XID_EFFECTS) | {154} == set(SUPPORTED_XIDS)
    assert {13, 31, 43, 45, 48, 63, 64, 74, 79, 94, 95, 109, 119, 154} <= SUPPORTED_XIDS


def test_xid_79_prints_the_xid_line_and_the_fallen_off_the_bus_line() -> None:
    assert xid_messages(79, _ctx()) == [
        "NVRM: Xid (PCI:0000:5d:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.",
        "NVRM: GPU 0000:5d:00.0: GPU has fallen off the bus.",
    ]


def test_a_known_process_is_printed_as_pid_and_name() -> None:
    (line,) = xid_messages(43, _ctx(pid=4242, process="pt_main_thread"))
    assert line.startswith("NVRM: Xid (PCI:0000:5d:00): 43, pid=4242, name=pt_main_thread, channel 0x")


def test_xid_45_names_the_previous_xid_that_caused_it() -> None:
    (line,) = xid_messages(45, _ctx(caused_by=79))
    assert re.search(r", Ch [0-9a-f]{8} caused by previous Xid 79$", line)
    (solo,) = xid_messages(45, _ctx())
    assert "caused by" not in solo


def test_xid_154_carries_the_recovery_action_in_the_last_parentheses() -> None:
    (line,) = xid_messages(154, _ctx(recovery_action="Node Reboot Required"))
    assert line == (
        "NVRM: Xid (PCI:0000:5d:00): 154, GPU recovery action changed from 0x0 (None) to 0x2 (Node Reboot Required)"
    )


def test_xid_119_names_the_gpu_whose_gsp_timed_out() -> None:
    (line,) = xid_messages(119, _ctx())
    assert "Timeout after 6s of waiting for RPC response from GPU3 GSP!" in line


def test_the_three_line_fall_off_has_no_xid() -> None:
    assert fallen_off_bus_three_lines("0000:5d:00.0", "10de:2330") == [
        "NVRM: The NVIDIA GPU 0000:5d:00.0",
        "NVRM: (PCI ID: 10de:2330) installed in this system has",
        "NVRM: fallen off the bus and is not responding to commands.",
    ]


def test_prefixed_lines_match_the_journald_shape() -> None:
    at = datetime(2026, 11, 29, 6, 50, tzinfo=UTC)
    for message in xid_messages(13, _ctx()):
        assert PREFIX.match(journal_line(at, "node-001", message))
