import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aiops.cli import app
from aiops.kmsg_cli import READ_LIMIT, bounded_lines
from events.kmsg_parser import MAX_LINE_CHARS, parse_text

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "kmsg" / "dmesg-T-gpu-node.log"

JsonObject = dict[str, object]


def run(args: list[str], stdin: str | bytes = "") -> list[JsonObject]:
    result = CliRunner().invoke(app, ["kmsg", "parse", *args], input=stdin)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    objects = [json.loads(line) for line in lines]
    assert all(isinstance(o, dict) for o in objects)
    return objects


def test_parse_prints_one_json_object_per_event_with_the_catalog_reading() -> None:
    stdin = (
        "[Fri Aug 30 11:20:18 2024] NVRM: Xid (PCI:0000:18:00): 48, pid=51234, name=python, "
        "An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer.\n"
        "[Fri Aug 30 11:20:19 2024] usb 1-1: new high-speed USB device\n"
    )
    [event] = run([], stdin)
    assert event == {
        "xid": 48,
        "pci_bus_id": "0000:18:00.0",
        "pid": 51234,
        "process": "python",
        "message": "An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer.",
        "time": "2024-08-30T11:20:18+00:00",
        "host": None,
        "mnemonic": "GPU_ECC_DBE",
        "meaning": event["meaning"],
        "level": "hardware",
        "nvidia_bucket": "WORKFLOW_XID48",
        "recommended_action": event["recommended_action"],
        "platform_action": "drain_reset_gpu",
    }
    assert isinstance(event["meaning"], str) and "double-bit" in event["meaning"]


def test_parse_adds_the_decoded_extras_when_present() -> None:
    stdin = "\n".join(
        [
            "Aug 30 11:20:19 gpu-node-17 kernel: NVRM: Xid (PCI:0000:18:00): 45, pid=1, name=python, "
            "Ch 00000010, caused by previous Xid 48",
            "Aug 30 11:20:19 gpu-node-17 kernel: NVRM: Xid (PCI:0000:18:00): 154, GPU recovery action "
            "changed from 0x0 (None) to 0x2 (Node Reboot Required)",
            "kernel: NVRM: Xid (PCI:0008:01:00): 149, NETIR_LINK_EVT Fatal XC0 i0 Link 00 (0x026001c6 0x0 0x0)",
            "nvidia-nvswitch3: SXid (PCI:0000:86:00.0): 12028, Non-fatal, Link 32 egress non-posted PRIV error",
            "nvidia-nvswitch3: SXid (PCI:0000:86:00.0): 12028, Data {0x00000000, 0x00000004}",
            "NVRM: GPU 0000:3c:00.0: GPU has fallen off the bus.",
        ]
    )
    xid45, xid154, xid149, sxid, fell_off = run(["--year", "2024"], stdin)

    assert xid45["caused_by_xid"] == 48
    assert xid45["host"] == "gpu-node-17"
    assert xid45["time"] == "2024-08-30T11:20:19+00:00"
    assert xid45["platform_action"] == "none"

    assert xid154["recovery_action"] == "Node Reboot Required"
    assert xid154["platform_action"] == "reboot_node"

    assert (xid149["mnemonic"], xid149["link"], xid149["severity"], xid149["subcomponent"]) == (
        "NVLINK_NETIR_ERROR",
        0,
        "Fatal",
        "NETIR_LINK_EVT",
    )
    assert xid149["platform_action"] == "follow_recovery_action"

    assert sxid["sxid"] is True
    assert (sxid["xid"], sxid["nvswitch"], sxid["severity"], sxid["link"]) == (
        12028,
        "nvidia-nvswitch3",
        "Non-fatal",
        32,
    )
    assert sxid["data"] == "{0x00000000, 0x00000004}"
    assert sxid["mnemonic"] == "NVSWITCH_SXID"

    assert (fell_off["xid"], fell_off["fell_off_bus_without_xid"]) == (79, True)
    assert fell_off["mnemonic"] == "GPU_HAS_FALLEN_OFF_THE_BUS"
    # Absent extras are left out rather than printed as null.
    assert "caused_by_xid" not in xid154 and "sxid" not in xid45


def test_an_unknown_xid_still_prints_as_unknown() -> None:
    [event] = run([], "NVRM: Xid (PCI:0000:18:00): 999, pid=1, name=python, something new\n")
    assert event["xid"] == 999
    assert event["mnemonic"] == "UNKNOWN"
    assert event["meaning"] == "Xid 999 is not in the catalog."
    assert event["platform_action"] == "investigate"


@pytest.mark.parametrize("stdin", ["", "\n\n", "usb 1-1: new device\nNVRM: loading NVIDIA module\n"])
def test_nothing_recognised_exits_zero_with_no_output(stdin: str) -> None:
    assert run([], stdin) == []


def test_invalid_utf8_on_stdin_is_tolerated() -> None:
    stdin = (
        b"\xff\xfe junk\nNVRM: Xid (PCI:0000:18:00): 79, pid=1, name=py\xe9, GPU has fallen off the bus.\n"
    )
    [event] = run([], stdin)
    assert event["xid"] == 79
    assert event["process"] == "py\ufffd"


def test_parse_reads_a_file_and_finds_every_event_of_the_sample_log() -> None:
    events = run(["--file", str(FIXTURE)])
    expected = parse_text(FIXTURE.read_text(encoding="utf-8"))
    assert [(e["xid"], e["pci_bus_id"]) for e in events] == [(r.xid, r.pci_bus_id) for r in expected]
    # 14, not 15: the three-line 'fallen off the bus' report and the Xid 79 of the same bus id are one fault.
    assert len(events) == 14


def test_pretty_output_is_indented_json() -> None:
    result = CliRunner().invoke(
        app,
        ["kmsg", "parse", "--pretty"],
        input="NVRM: Xid (PCI:0000:18:00): 13, pid=1, name=x, Graphics Exception\n",
    )
    assert result.exit_code == 0
    assert '\n  "xid": 13,' in result.stdout
    assert json.loads(result.stdout)["mnemonic"] == "GR_EXCEPTION"


def test_a_missing_file_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["kmsg", "parse", "--file", "/nonexistent/kmsg.log"])
    assert result.exit_code == 2


def test_a_line_without_an_end_is_read_only_up_to_the_limit_and_the_rest_is_counted() -> None:
    head = b"NVRM: Xid (PCI:0000:18:00): 13, pid=1, name=python, "
    tail = b"A" * (3 * READ_LIMIT)
    stream = io.BytesIO(head + tail + b"\nNVRM: Xid (PCI:0000:18:00): 79, pid=1, name=x, off the bus\n")
    lines = list(bounded_lines(stream))
    assert len(lines) == 2 and len(lines[0][0]) == READ_LIMIT
    assert lines[0][1] == len(head) + len(tail) - READ_LIMIT
    [cut, whole] = run([], stream.getvalue())
    assert cut["xid"] == 13 and cut["truncated_chars"] == len(head) + len(tail) - MAX_LINE_CHARS
    assert whole["xid"] == 79 and "truncated_chars" not in whole
