from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from events import kmsg_parser
from events.kmsg_parser import MAX_LINE_CHARS, KmsgParser, KmsgRecord, normalise_pci_bus_id, parse_text

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "kmsg"


def one(text: str, *, default_year: int | None = None) -> KmsgRecord:
    records = parse_text(text, default_year=default_year)
    assert len(records) == 1, records
    return records[0]


# --- the standard Xid line and its variants ----------------------------------------------------


@pytest.mark.parametrize(
    ("line", "xid", "pid", "process", "message"),
    [
        (
            "NVRM: Xid (PCI:0000:3b:00): 13, pid=48211, name=python3, Graphics SM Warp Exception on "
            "(GPC 4, TPC 1, SM 0): Out Of Range Address",
            13,
            48211,
            "python3",
            "Graphics SM Warp Exception on (GPC 4, TPC 1, SM 0): Out Of Range Address",
        ),
        (
            "NVRM: Xid (PCI:0000:18:00): 63, pid='<unknown>', name=<unknown>, Row Remapper: New row "
            "(0x00000000000052a1) is marked for remapping, reset gpu to activate.",
            63,
            None,
            None,
            "Row Remapper: New row (0x00000000000052a1) is marked for remapping, reset gpu to activate.",
        ),
        (
            "NVRM: Xid (PCI:0000:0a:00): 62, pid=<unknown>, name=<unknown>, 2a1b8c48 2a1b8aa0 2a1b8c08",
            62,
            None,
            None,
            "2a1b8c48 2a1b8aa0 2a1b8c08",
        ),
        (
            "NVRM: Xid (PCI:0000:9a:00): 31, pid=50112, name=pt_main_thread, Ch 0000003a, intr 10000000. "
            "MMU Fault: ENGINE GRAPHICS GPCCLIENT_T1_3 faulted @ 0x7f4e_a0000000",
            31,
            50112,
            "pt_main_thread",
            "Ch 0000003a, intr 10000000. MMU Fault: ENGINE GRAPHICS GPCCLIENT_T1_3 faulted @ 0x7f4e_a0000000",
        ),
        (
            "NVRM: Xid (PCI:0000:41:00): 119, pid=53011, name=nvidia-smi, Timeout after 6s of waiting for "
            "RPC response from GPU1 GSP! Expected function 76 (GSP_RM_CONTROL) (0x2080014b 0x5).",
            119,
            53011,
            "nvidia-smi",
            "Timeout after 6s of waiting for RPC response from GPU1 GSP! Expected function 76 "
            "(GSP_RM_CONTROL) (0x2080014b 0x5).",
        ),
        # pid without name, name without pid, neither.
        ("NVRM: Xid (PCI:0000:3b:00): 62, pid=1234, 2a1b8c48", 62, 1234, None, "2a1b8c48"),
        (
            "NVRM: Xid (PCI:0000:3b:00): 13, name=python, Graphics Exception",
            13,
            None,
            "python",
            "Graphics Exception",
        ),
        (
            "NVRM: Xid (PCI:0000:00:1e): 13, Graphics Exception: ESR 0x405840=0x2ff",
            13,
            None,
            None,
            "Graphics Exception: ESR 0x405840=0x2ff",
        ),
        # Old drivers: channel forms, and no "PCI:" in the parentheses.
        (
            "NVRM: Xid (PCI:0000:02:00): 43, Ch 00000010, engmask 00000101",
            43,
            None,
            None,
            "Ch 00000010, engmask 00000101",
        ),
        (
            "NVRM: Xid (PCI:0000:02:00): 43, Channel ID 00000010 intr 00000040",
            43,
            None,
            None,
            "Channel ID 00000010 intr 00000040",
        ),
        ("NVRM: Xid (0000:03:00): 13, 0001 00000000 0000a1c0", 13, None, None, "0001 00000000 0000a1c0"),
        # Code alone.
        ("NVRM: Xid (PCI:0000:18:00): 79", 79, None, None, ""),
        (
            "NVRM: Xid (PCI:0000:18:00): 79, GPU has fallen off the bus.",
            79,
            None,
            None,
            "GPU has fallen off the bus.",
        ),
    ],
)
def test_standard_xid_lines_are_decoded(
    line: str, xid: int, pid: int | None, process: str | None, message: str
) -> None:
    record = one(line)
    assert (record.xid, record.pid, record.process, record.message) == (xid, pid, process, message)
    assert record.raw == line
    assert not record.sxid and not record.fell_off_bus_without_xid


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("0000:18:00", "0000:18:00.0"),
        ("0000:18:00.0", "0000:18:00.0"),
        ("0000:3B:00.0", "0000:3b:00.0"),
        ("0000:3B:00", "0000:3b:00.0"),
        ("0001:B1:00", "0001:b1:00.0"),
        ("000A:c1:00.1", "000a:c1:00.1"),
        ("00000000:1A:00.0", "0000:1a:00.0"),
        ("18:00.0", "0000:18:00.0"),
        ("garbage", None),
        ("0000:18", None),
    ],
)
def test_pci_bus_ids_are_normalised(text: str, normalised: str | None) -> None:
    assert normalise_pci_bus_id(text) == normalised


@pytest.mark.parametrize(
    ("pci", "normalised"),
    [
        ("0000:18:00", "0000:18:00.0"),
        ("0000:3B:00.0", "0000:3b:00.0"),
        ("0002:AF:00", "0002:af:00.0"),
        ("00000000:1A:00.0", "0000:1a:00.0"),
    ],
)
def test_pci_bus_ids_in_xid_lines_are_normalised(pci: str, normalised: str) -> None:
    assert one(f"NVRM: Xid (PCI:{pci}): 48, pid=7, name=python, DBE").pci_bus_id == normalised


# --- prefixes ----------------------------------------------------------------------------------

BODY = "NVRM: Xid (PCI:0000:18:00): 48, pid=51234, name=python, An uncorrectable double bit error (DBE)"
AUG_30 = datetime(2024, 8, 30, 11, 43, 9, tzinfo=UTC)


@pytest.mark.parametrize(
    ("prefix", "time", "host", "uptime_s"),
    [
        ("", None, None, None),
        ("[ 1234.567890] ", None, None, 1234.56789),
        ("[1234.567890] ", None, None, 1234.56789),
        ("[Fri Aug 30 11:43:09 2024] ", AUG_30, None, None),
        ("[Mon Sep  2 07:05:01 2024] ", datetime(2024, 9, 2, 7, 5, 1, tzinfo=UTC), None, None),
        ("kernel: ", None, None, None),
        ("kernel: [ 1234.5] ", None, None, 1234.5),
        (
            "2026-11-29T06:50:01.123456+00:00 gpu-node-17 kernel: ",
            datetime(2026, 11, 29, 6, 50, 1, 123456, tzinfo=UTC),
            "gpu-node-17",
            None,
        ),
        ("2024-08-30T11:43:09+0000 gpu-node-17 kernel: ", AUG_30, "gpu-node-17", None),
        ("2024-08-30T11:43:09Z gpu-node-17.dc1.example kernel: ", AUG_30, "gpu-node-17.dc1.example", None),
        ("2024-08-30T13:43:09+02:00 gpu-node-17 kernel: ", AUG_30, "gpu-node-17", None),
        (
            "2024-08-30T11:43:09.5 gpu-node-17 kernel: ",
            AUG_30.replace(microsecond=500000),
            "gpu-node-17",
            None,
        ),
        ("Aug 30 11:43:09 gpu-node-17 kernel: ", AUG_30, "gpu-node-17", None),
        ("Aug 30 11:43:09 gpu-node-17 kernel: [ 1234.5] ", AUG_30, "gpu-node-17", 1234.5),
        (
            "Aug 30 11:43:09.250000 gpu-node-17 kernel: ",
            AUG_30.replace(microsecond=250000),
            "gpu-node-17",
            None,
        ),
        ("<4>Aug 30 11:43:09 gpu-node-17 kernel: ", AUG_30, "gpu-node-17", None),
        ("4,1523,5678901234,-;", None, None, 5678.901234),
    ],
)
def test_every_prefix_style_is_understood(
    prefix: str, time: datetime | None, host: str | None, uptime_s: float | None
) -> None:
    record = one(prefix + BODY, default_year=2024)
    assert (record.time, record.host, record.uptime_s) == (time, host, uptime_s)
    assert (record.xid, record.pci_bus_id, record.pid, record.process) == (
        48,
        "0000:18:00.0",
        51234,
        "python",
    )


def test_classic_syslog_times_without_a_year_take_the_current_year() -> None:
    now = datetime.now(UTC)
    yesterday = now - timedelta(days=1)
    line = f"{yesterday:%b} {yesterday.day:2d} {yesterday:%H:%M:%S} gpu-node-17 kernel: {BODY}"
    record = one(line)
    assert record.time is not None
    assert record.time.year == yesterday.year


def test_a_classic_syslog_date_in_the_future_belongs_to_last_year() -> None:
    soon = datetime.now(UTC) + timedelta(days=40)
    if (soon.month, soon.day) == (2, 29):  # has no counterpart last year
        soon += timedelta(days=1)
    line = f"{soon:%b} {soon.day:2d} {soon:%H:%M:%S} gpu-node-17 kernel: {BODY}"
    record = one(line)
    assert record.time is not None
    assert record.time.year == soon.year - 1


def test_prefix_times_without_a_zone_are_read_in_the_default_zone() -> None:
    cest = timezone(timedelta(hours=2))
    records = parse_text(f"[Fri Aug 30 13:43:09 2024] {BODY}", default_tz=cest)
    assert records[0].time == AUG_30


def test_an_impossible_prefix_date_leaves_the_time_unknown() -> None:
    record = one(f"Feb 30 11:43:09 gpu-node-17 kernel: {BODY}", default_year=2024)
    assert record.time is None
    assert record.host == "gpu-node-17"


# --- decoded details ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "caused_by"),
    [
        (
            "NVRM: Xid (PCI:0000:18:00): 45, pid=51234, name=python, Ch 00000010, caused by previous Xid 48",
            48,
        ),
        ("NVRM: Xid (PCI:0000:18:00): 45, pid=1, name=x, Preemptive Cleanup, due to previous Xid 79", 79),
        ("NVRM: Xid (PCI:0000:3b:00): 45, pid=48211, name=python3, Ch 00000008", None),
    ],
)
def test_xid_45_names_the_xid_that_caused_it(line: str, caused_by: int | None) -> None:
    assert one(line).caused_by_xid == caused_by


@pytest.mark.parametrize(
    ("line", "xid", "subcomponent", "severity", "link"),
    [
        (
            "NVRM: Xid (PCI:0000:01:00): 144, SAW_MVB Nonfatal XC0 i0 Link 0 "
            "(0x00000001 0x00000008 0x00000000 0x00000000 0x00000000 0x00000000)",
            144,
            "SAW_MVB",
            "Nonfatal",
            0,
        ),
        (
            "NVRM: Xid (PCI:0008:01:00): 149, NETIR_LINK_EVT Fatal XC0 i0 Link 00 "
            "(0x026001c6 0x00000000 0x00000000 0x00000000 0x00000000 0x00000000)",
            149,
            "NETIR_LINK_EVT",
            "Fatal",
            0,
        ),
        (
            "NVRM: Xid (PCI:0008:01:00): 149, NETIR_LINK_EVT Fatal XC0 i0 Link -1 (0x025001c6 0x00000000 0x0)",
            149,
            "NETIR_LINK_EVT",
            "Fatal",
            -1,
        ),
        (
            "NVRM: Xid (PCI:0018:01:00): 145, pid=9, name=python, RLW_REMAP Non-fatal XC1 i2 Link 17 "
            "(0x00000004 0x00000000 0x00000000)",
            145,
            "RLW_REMAP",
            "Non-fatal",
            17,
        ),
    ],
)
def test_nvlink5_lines_give_subcomponent_severity_and_link(
    line: str, xid: int, subcomponent: str, severity: str, link: int
) -> None:
    record = one(line)
    assert (record.xid, record.subcomponent, record.severity, record.link) == (
        xid,
        subcomponent,
        severity,
        link,
    )


@pytest.mark.parametrize(
    "action", ["None", "Drain P2P", "Drain and Reset", "GPU Reset Required", "Node Reboot Required"]
)
def test_xid_154_carries_its_recovery_action_in_the_last_parentheses(action: str) -> None:
    line = f"NVRM: Xid (PCI:0000:18:00): 154, GPU recovery action changed from 0x0 (None) to 0x2 ({action})"
    assert one(line).recovery_action == action


def test_xid_154_tolerates_a_trailing_full_stop_and_a_pid() -> None:
    line = (
        "NVRM: Xid (PCI:0000:18:00): 154, pid=77, name=python, "
        "GPU recovery action changed from 0x1 (GPU Reset Required) to 0x2 (Node Reboot Required)."
    )
    assert one(line).recovery_action == "Node Reboot Required"


def test_xid_74_gives_the_failing_link() -> None:
    line = "NVRM: Xid (PCI:0000:87:00): 74, pid=1, name=x, NVLink: fatal error detected on link 5(0x0, 0x0, 0x10000)"
    assert one(line).link == 5


# --- fallen off the bus without an Xid -----------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "pci"),
    [
        ("NVRM: GPU at 0000:3b:00.0 has fallen off the bus.", "0000:3b:00.0"),
        ("NVRM: GPU at PCI:0000:3B:00: has fallen off the bus.", "0000:3b:00.0"),
        ("[ 4242.1] NVRM: GPU 0000:3c:00.0: GPU has fallen off the bus.", "0000:3c:00.0"),
        ("kernel: NVRM: GPU 0001:C1:00.0: GPU has fallen off the bus.", "0001:c1:00.0"),
    ],
)
def test_one_line_fallen_off_reports_become_xid_79(line: str, pci: str) -> None:
    record = one(line)
    assert (record.xid, record.pci_bus_id, record.fell_off_bus_without_xid) == (79, pci, True)
    assert "fallen off the bus" in record.message


THREE_LINES = [
    "[Fri Aug 30 11:43:09 2024] NVRM: The NVIDIA GPU 0000:2a:00.0",
    "[Fri Aug 30 11:43:09 2024] NVRM: (PCI ID: 10de:2330) installed in this system has",
    "[Fri Aug 30 11:43:10 2024] NVRM: fallen off the bus and is not responding to commands.",
]


def test_the_three_line_fallen_off_report_becomes_one_xid_79_on_its_third_line() -> None:
    parser = KmsgParser()
    assert parser.feed(THREE_LINES[0]) == []
    assert parser.feed(THREE_LINES[1]) == []
    records = parser.feed(THREE_LINES[2])
    assert len(records) == 1
    record = records[0]
    assert (record.xid, record.pci_bus_id, record.fell_off_bus_without_xid) == (79, "0000:2a:00.0", True)
    assert record.raw == "\n".join(THREE_LINES)
    assert record.time == AUG_30  # from the first line
    assert record.message == (
        "The NVIDIA GPU 0000:2a:00.0 (PCI ID: 10de:2330) installed in this system has "
        "fallen off the bus and is not responding to commands."
    )
    assert parser.flush() == []


@pytest.mark.parametrize(
    "lines",
    [
        [THREE_LINES[0], THREE_LINES[1], "[Fri Aug 30 11:43:09 2024] usb 1-1: new device", THREE_LINES[2]],
        [THREE_LINES[0], THREE_LINES[2]],
        [THREE_LINES[1], THREE_LINES[2]],
        [THREE_LINES[0], "NVRM: installed in this system is not supported by the", THREE_LINES[2]],
        [THREE_LINES[0], THREE_LINES[1]],
    ],
)
def test_a_broken_three_line_report_is_dropped(lines: list[str]) -> None:
    assert parse_text("\n".join(lines)) == []


def test_a_restarted_three_line_report_counts_once() -> None:
    records = parse_text("\n".join([THREE_LINES[0], *THREE_LINES]))
    assert [r.xid for r in records] == [79]


def test_an_xid_line_inside_a_three_line_report_is_kept_and_breaks_the_report() -> None:
    xid = "NVRM: Xid (PCI:0000:2a:00): 79, pid=52388, name=python, GPU has fallen off the bus."
    records = parse_text("\n".join([THREE_LINES[0], xid, THREE_LINES[1], THREE_LINES[2]]))
    assert [(r.xid, r.fell_off_bus_without_xid) for r in records] == [(79, False)]


# --- NVSwitch SXid --------------------------------------------------------------------------------

SXID_MAIN = "[ 5501.2] nvidia-nvswitch3: SXid (PCI:0000:86:00.0): 12028, Non-fatal, Link 32 egress non-posted PRIV error (First)"
SXID_SEVERITY = "[ 5501.2] nvidia-nvswitch3: SXid (PCI:0000:86:00.0): 12028, Severity 0 Engine instance 32 Sub-engine instance 00"
SXID_DATA = (
    "[ 5501.2] nvidia-nvswitch3: SXid (PCI:0000:86:00.0): 12028, Data {0x00000000, 0x00000004, 0x00000000}"
)
XID_AFTER = (
    "[ 5502.0] NVRM: Xid (PCI:0000:87:00): 74, pid=52001, name=python, NVLink: fatal error detected on link 5"
)


def test_an_sxid_waits_for_its_continuation_lines_and_is_released_by_the_next_record() -> None:
    parser = KmsgParser()
    assert parser.feed(SXID_MAIN) == []
    assert parser.feed(SXID_SEVERITY) == []
    assert parser.feed(SXID_DATA) == []
    records = parser.feed(XID_AFTER)
    assert [(r.xid, r.sxid) for r in records] == [(12028, True), (74, False)]
    sxid = records[0]
    assert sxid.nvswitch == "nvidia-nvswitch3"
    assert sxid.pci_bus_id == "0000:86:00.0"
    assert sxid.link == 32
    assert sxid.severity == "Non-fatal"
    assert sxid.data == "{0x00000000, 0x00000004, 0x00000000}"
    assert sxid.message == (
        "Non-fatal, Link 32 egress non-posted PRIV error (First); Severity 0 Engine instance 32 Sub-engine instance 00"
    )
    assert sxid.raw == "\n".join([SXID_MAIN, SXID_SEVERITY, SXID_DATA])
    assert sxid.uptime_s == 5501.2
    assert parser.flush() == []


def test_a_held_sxid_is_released_by_flush() -> None:
    parser = KmsgParser()
    assert parser.feed(SXID_MAIN) == []
    records = parser.flush()
    assert [(r.xid, r.sxid, r.data) for r in records] == [(12028, True, None)]
    assert parser.flush() == []


def test_a_held_sxid_is_released_by_an_unrelated_line() -> None:
    parser = KmsgParser()
    parser.feed(SXID_MAIN)
    records = parser.feed("[ 5503.0] EXT4-fs (nvme0n1p2): re-mounted. Opts: errors=remount-ro")
    assert [r.xid for r in records] == [12028]


def test_consecutive_sxids_are_separate_records() -> None:
    fatal = (
        "Aug 30 11:31:55 gpu-node-17 kernel: nvidia-nvswitch0: SXid (PCI:0000:c1:00.0): 20034, "
        "Fatal, Link 50 LTSSM Fault Up"
    )
    records = parse_text("\n".join([SXID_MAIN, SXID_DATA, fatal]), default_year=2024)
    assert [(r.xid, r.nvswitch, r.severity, r.link) for r in records] == [
        (12028, "nvidia-nvswitch3", "Non-fatal", 32),
        (20034, "nvidia-nvswitch0", "Fatal", 50),
    ]
    assert records[1].host == "gpu-node-17"
    assert records[1].time == datetime(2024, 8, 30, 11, 31, 55, tzinfo=UTC)


def test_a_continuation_for_another_sxid_is_not_attached() -> None:
    other = "[ 5501.2] nvidia-nvswitch3: SXid (PCI:0000:86:00.0): 19084, Data {0x1}"
    records = parse_text("\n".join([SXID_MAIN, other]))
    # Not attached to 12028; its own main line was lost, so it is reported as the SXid it names.
    assert [(r.xid, r.data) for r in records] == [(12028, None), (19084, "{0x1}")]


def test_a_truncated_data_line_is_still_a_continuation() -> None:
    truncated = "[ 5501.2] nvidia-nvswitch3: SXid (PCI:0000:86:00.0): 12028, Data {0x00000000, 0x0000"
    records = parse_text("\n".join([SXID_MAIN, truncated]))
    assert [(r.xid, r.data) for r in records] == [(12028, "{0x00000000, 0x0000")]


def test_an_orphan_sxid_continuation_is_reported_as_the_sxid_it_names() -> None:
    # Its main line was lost (ring buffer wrap): the NVSwitch fault still happened.
    [record] = parse_text(SXID_DATA)
    assert (record.xid, record.sxid, record.data) == (12028, True, "{0x00000000, 0x00000004, 0x00000000}")


# --- garbage, noise and robustness ---------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "",
        "   ",
        "\x00\x01\x02",
        "NVRM",
        "NVRM: Xid",
        "NVRM: Xid (PCI:zzzz): 13, x",
        "NVRM: Xid (PCI:0000:18:00): 99999999999999999999999, x",
        "NVRM: loading NVIDIA UNIX x86_64 Kernel Module  550.90.07  Fri May 31 09:35:42 UTC 2024",
        "NVRM: GPU at PCI:0000:3b:00: GPU-6a1f3c7e-0d2b-11ef-9c1e-5b7a2d9e4f10",
        "NVRM: GPU 0000:2a:00.0: RmInitAdapter failed! (0x23:0x65:1457)",
        "SXid",
        "nvidia-nvswitch3: SXid (PCI:0000:86:00.0): not-a-code",
        "[ 12.3] usb 1-1: new high-speed USB device number 2 using xhci_hcd",
        "Aug 30 11:43:09 gpu-node-17 systemd[1]: Started Session 42 of user root.",
        "\u2028NVRM:\u00e9\U0001f525 Xid (((",
    ],
)
def test_lines_that_are_not_gpu_faults_give_nothing(line: str) -> None:
    parser = KmsgParser()
    assert parser.feed(line) == []
    assert parser.flush() == []


def test_a_line_over_the_cap_is_read_on_its_first_part_and_says_how_much_was_cut() -> None:
    head = "NVRM: Xid (PCI:0000:18:00): 13, pid=7, name=python, "
    [record] = KmsgParser().feed(head + "A" * 100_000)
    assert record.xid == 13 and record.pid == 7 and record.process == "python"
    assert len(record.raw) == MAX_LINE_CHARS
    assert record.truncated_chars == len(head) + 100_000 - MAX_LINE_CHARS


def test_a_name_field_followed_by_a_long_run_of_spaces_is_read() -> None:
    line = "NVRM: Xid (PCI:0000:18:00): 13, pid=7, name=" + " " * 3000 + "python  , Graphics Exception"
    [record] = KmsgParser().feed(line)
    assert record.process == "python" and record.message == "Graphics Exception"
    assert record.truncated_chars == 0


@pytest.mark.parametrize(
    "data",
    [b"\xff\xfe\xfd", b"NVRM: Xid (PCI:0000:18:00): \xff\xfe", b"\x80SXid (PCI:\xc3(", b""],
)
def test_undecodable_bytes_never_raise(data: bytes) -> None:
    parser = KmsgParser()
    assert parser.feed(data) == []
    assert parser.flush() == []


def test_bytes_lines_with_newlines_are_parsed() -> None:
    records = KmsgParser().feed(
        b"[ 12.5] NVRM: Xid (PCI:0000:18:00): 79, pid=1, name=python, GPU has fallen off the bus.\r\n"
    )
    assert [(r.xid, r.uptime_s, r.message) for r in records] == [(79, 12.5, "GPU has fallen off the bus.")]


def test_a_line_holding_several_lines_is_split() -> None:
    records = KmsgParser().feed("\n".join(THREE_LINES))
    assert [r.xid for r in records] == [79]


def test_a_multi_line_report_survives_lines_that_end_with_a_newline() -> None:
    parser = KmsgParser()
    records = [r for line in [*THREE_LINES, SXID_MAIN, SXID_DATA] for r in parser.feed(line + "\n")]
    records += parser.flush()
    assert [(r.xid, r.data is not None) for r in records] == [(79, False), (12028, True)]


def test_a_storm_of_identical_lines_gives_one_record_per_line() -> None:
    # Deduplication is the consumer's job (event ids from content); the parser reports every line.
    line = "NVRM: Xid (PCI:0000:ba:00): 95, pid=9, name=python, Uncontained: FBHUB. RST: Yes, D-RST: No"
    assert len(parse_text("\n".join([line] * 50))) == 50


# --- a real-looking log ------------------------------------------------------------------------------


def test_a_dmesg_t_log_parses_to_the_expected_events() -> None:
    text = (FIXTURES / "dmesg-T-gpu-node.log").read_text(encoding="utf-8")
    records = parse_text(text)
    got = [(r.xid, r.pci_bus_id, r.time.strftime("%H:%M:%S") if r.time else None) for r in records]
    assert got == [
        (13, "0000:3b:00.0", "10:02:44"),
        (13, "0000:3b:00.0", "10:02:44"),
        (45, "0000:3b:00.0", "10:02:45"),
        (31, "0000:9a:00.0", "10:40:02"),
        (63, "0000:18:00.0", "11:20:18"),
        (48, "0000:18:00.0", "11:20:18"),
        (94, "0000:18:00.0", "11:20:18"),
        (45, "0000:18:00.0", "11:20:19"),
        (154, "0000:18:00.0", "11:20:19"),
        (12028, "0000:86:00.0", "11:31:55"),
        (74, "0000:87:00.0", "11:31:56"),
        (79, "0000:2a:00.0", "11:43:09"),  # the three-line report and the Xid 79 line: one fault
        (119, "0000:41:00.0", "11:58:41"),
        (95, "0000:c1:00.0", "12:07:13"),
    ]
    by_xid = {r.xid: r for r in records}
    assert records[7].caused_by_xid == 48
    assert by_xid[154].recovery_action == "GPU Reset Required"
    assert (
        by_xid[12028].sxid and by_xid[12028].data is not None and by_xid[12028].nvswitch == "nvidia-nvswitch3"
    )
    assert len([r for r in records if r.xid == 79]) == 1
    assert all(r.time is not None and r.time.date() == datetime(2024, 8, 30).date() for r in records)


class _BrokenPattern:
    def match(self, *args: object) -> None:
        raise RuntimeError("parser bug")


def test_a_parser_bug_is_logged_and_the_stream_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    parser = KmsgParser()
    line = "NVRM: Xid (PCI:0000:18:00): 13, pid=1, name=x, Graphics Exception"
    monkeypatch.setattr(kmsg_parser, "XID", _BrokenPattern())
    assert parser.feed(line) == []
    assert "kmsg parser failed" in caplog.text
    monkeypatch.undo()
    assert [r.xid for r in parser.feed(line)] == [13]


def test_a_three_line_report_survives_a_flush_between_its_lines() -> None:
    # A consumer that caught up after line 2 flushes; line 3 arrives in its next batch.
    parser = KmsgParser()
    assert parser.feed(THREE_LINES[0]) == []
    assert parser.feed(THREE_LINES[1]) == []
    assert parser.flush() == []
    assert [(r.xid, r.pci_bus_id) for r in parser.feed(THREE_LINES[2])] == [(79, "0000:2a:00.0")]


def test_an_unfinished_three_line_report_is_dropped_by_a_line_that_does_not_continue_it() -> None:
    parser = KmsgParser()
    assert parser.feed(THREE_LINES[0]) == []
    assert parser.flush() == []
    assert parser.feed("NVRM: something else entirely") == []
    assert parser.feed(THREE_LINES[2]) == []


# --- anchored at the driver prefix; one fault, one record (issue 15, items 9-11) -------------------
# Formats from NVIDIA's driver output (shared domain notes): "NVRM: Xid (PCI:<bus>): <code>, pid=,
# name=<process>, <text>" and "nvidia-nvswitch<N>: SXid (PCI:<bus>): <code>, ..."; text after
# ``name=`` is the process's own data and never a driver prefix.


def test_a_process_name_that_looks_like_an_sxid_is_data_of_the_xid_line():
    benign = one(
        "[ 12.5] NVRM: Xid (PCI:0000:3b:00): 43, pid=77, name=SXid (PCI:0000:05:00.0): 12028, Ch 00000010"
    )
    assert (benign.xid, benign.sxid, benign.pid) == (43, False, 77)
    crash = one("[ 12.5] NVRM: Xid (PCI:0000:3b:00): 94, pid=78, name=SXid (18:00):1, Contained: SM (0x1).")
    assert (crash.xid, crash.sxid, crash.process) == (94, False, "SXid (18:00):1")


def test_an_sxid_line_is_still_an_sxid():
    [record] = parse_text(
        "nvidia-nvswitch2: SXid (PCI:0000:05:00.0): 12028, Non-fatal, Link 32 egress non-posted PRIV error"
    )
    assert (record.xid, record.sxid, record.nvswitch) == (12028, True, "nvidia-nvswitch2")


def test_a_driver_xid_79_and_the_fallen_off_report_for_one_bus_id_are_one_record():
    text = "\n".join(
        [
            "[ 100.0] NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.",
            "[ 100.1] NVRM: The NVIDIA GPU 0000:3b:00.0 (PCI ID: 10de:2330)",
            "[ 100.1] NVRM: installed in this system has",
            "[ 100.1] NVRM: fallen off the bus and is not responding to commands.",
            "[ 100.2] NVRM: GPU at PCI:0000:3b:00 has fallen off the bus.",
        ]
    )
    [record] = parse_text(text)
    assert record.xid == 79 and record.pci_bus_id == "0000:3b:00.0"
    assert not record.fell_off_bus_without_xid


def test_another_gpu_falling_off_the_bus_is_its_own_record():
    text = "\n".join(
        [
            "[ 100.0] NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.",
            "[ 100.2] NVRM: GPU at PCI:0000:5d:00 has fallen off the bus.",
        ]
    )
    assert [(r.xid, r.pci_bus_id) for r in parse_text(text)] == [(79, "0000:3b:00.0"), (79, "0000:5d:00.0")]


def test_the_same_gpu_falling_off_again_much_later_is_a_new_record():
    text = "\n".join(
        [
            "[ 100.0] NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.",
            "[ 9100.0] NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.",
        ]
    )
    assert len(parse_text(text)) == 2


def test_an_sxid_continuation_whose_main_line_was_lost_is_reported_as_that_sxid():
    text = "\n".join(
        [
            "nvidia-nvswitch1: SXid (PCI:0000:06:00.0): 24007, Data {0x00000000, 0x00000000, 0x0000001a}",
            "nvidia-nvswitch1: SXid (PCI:0000:06:00.0): 24007, Severity 1 Engine instance 32 Sub-engine instance 00",
        ]
    )
    [record] = parse_text(text)
    assert (record.xid, record.sxid, record.pci_bus_id) == (24007, True, "0000:06:00.0")
    assert record.nvswitch == "nvidia-nvswitch1" and record.data is not None


def test_the_one_line_fallen_off_the_bus_report_is_recognised():
    record = one("NVRM: The NVIDIA GPU 0000:3b:00.0 fallen off the bus and is not responding to commands.")
    assert (record.xid, record.pci_bus_id, record.fell_off_bus_without_xid) == (79, "0000:3b:00.0", True)
    full = one(
        "NVRM: The NVIDIA GPU 0000:3b:00.0 (PCI ID: 10de:2330) installed in this system has fallen off the bus and is not responding to commands."
    )
    assert full.pci_bus_id == "0000:3b:00.0"
