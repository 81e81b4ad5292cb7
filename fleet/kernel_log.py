"""Kernel log lines in the formats the NVIDIA driver (NVRM) really prints, with a journald prefix.

Prefix: ``journalctl -o short-iso-precise``, e.g.
``2026-11-29T06:50:01.123456+00:00 node-001 kernel: NVRM: Xid (PCI:0000:18:00): 79, ...``.
In the Xid line the driver writes the PCI id without the ``.0`` function (``PCI:0000:18:00``);
other NVRM lines use the full id. Message bodies follow lines seen in public driver logs; the
variable parts (GPC/TPC/SM, addresses, links, channels) are drawn from the caller's rng.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

RecoveryAction = Literal["None", "GPU Reset Required", "Node Reboot Required", "Drain P2P", "Drain and Reset"]

# Xid 154 reports the driver's recovery action as a code and a name.
RECOVERY_ACTION_CODES: dict[RecoveryAction, int] = {
    "None": 0x0,
    "GPU Reset Required": 0x1,
    "Node Reboot Required": 0x2,
    "Drain P2P": 0x3,
    "Drain and Reset": 0x4,
}

NVLINKS_PER_H100 = 18


@dataclass(frozen=True)
class XidContext:
    """What one Xid message needs besides its code."""

    pci_bus_id: str
    gpu_index: int
    rng: random.Random
    pid: int | None = None
    process: str | None = None
    caused_by: int | None = None
    recovery_action: RecoveryAction = "GPU Reset Required"


def journal_line(time: datetime, host: str, message: str) -> str:
    """One journald short-iso-precise kernel line."""
    stamp = time.astimezone(UTC).isoformat(timespec="microseconds")
    return f"{stamp} {host} kernel: {message}"


def xid_pci(pci_bus_id: str) -> str:
    """``0000:18:00.0`` → ``0000:18:00``, as the Xid line prints it."""
    return pci_bus_id.rsplit(".", 1)[0] if "." in pci_bus_id else pci_bus_id


def _who(ctx: XidContext) -> str:
    pid = "'<unknown>'" if ctx.pid is None else str(ctx.pid)
    name = "<unknown>" if ctx.process is None else ctx.process
    return f"pid={pid}, name={name}, "


def _xid(xid: int, ctx: XidContext, text: str, *, with_process: bool = True) -> str:
    who = _who(ctx) if with_process else ""
    return f"NVRM: Xid (PCI:{xid_pci(ctx.pci_bus_id)}): {xid}, {who}{text}"


def _channel(ctx: XidContext) -> int:
    return ctx.rng.choice((0x1, 0x2, 0x8, 0xA, 0x10, 0x18))


def _xid13(ctx: XidContext) -> list[str]:
    gpc, tpc, sm = ctx.rng.randrange(8), ctx.rng.randrange(9), ctx.rng.randrange(2)
    esr = [ctx.rng.getrandbits(32) for _ in range(4)]
    return [
        _xid(13, ctx, f"Graphics SM Warp Exception on (GPC {gpc}, TPC {tpc}, SM {sm}): Out Of Range Address"),
        _xid(
            13,
            ctx,
            f"Graphics Exception: ESR 0x{0x500000 + gpc * 0x8000:x}=0x{esr[0]:x} "
            f"0x{0x500004 + gpc * 0x8000:x}=0x{esr[1] & 0xFF:x} "
            f"0x{0x500008 + gpc * 0x8000:x}=0x{esr[2]:x} 0x{0x50000C + gpc * 0x8000:x}=0x{esr[3] & 0xFFFF:x}",
        ),
    ]


def _xid31(ctx: XidContext) -> list[str]:
    gpc, client = ctx.rng.randrange(8), ctx.rng.randrange(16)
    addr = ctx.rng.getrandbits(36) << 12
    access = ctx.rng.choice(("ACCESS_TYPE_VIRT_READ", "ACCESS_TYPE_VIRT_WRITE"))
    return [
        _xid(
            31,
            ctx,
            f"channel 0x{_channel(ctx):08x}, intr 00000000. MMU Fault: ENGINE GRAPHICS GPC{gpc} "
            f"GPCCLIENT_T1_{client} faulted @ 0x{addr >> 32:x}_{addr & 0xFFFFFFFF:08x}. "
            f"Fault is of type FAULT_PDE {access}",
        )
    ]


def _xid43(ctx: XidContext) -> list[str]:
    return [_xid(43, ctx, f"channel 0x{_channel(ctx):08x}")]


def _xid45(ctx: XidContext) -> list[str]:
    # The real line has no comma before "caused by".
    cause = "" if ctx.caused_by is None else f" caused by previous Xid {ctx.caused_by}"
    return [_xid(45, ctx, f"Ch {_channel(ctx):08x}{cause}")]


def _xid48(ctx: XidContext) -> list[str]:
    addr = ctx.rng.getrandbits(34) << 4
    part, sub = ctx.rng.randrange(12), ctx.rng.randrange(2)
    return [
        _xid(
            48,
            ctx,
            "An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer "
            f"at physAddr 0x{addr:x} partition {part}, subpartition {sub}.",
        )
    ]


def _xid63(ctx: XidContext) -> list[str]:
    row = ctx.rng.getrandbits(32) << 4
    return [
        _xid(63, ctx, f"Row Remapper: New row (0x{row:016x}) marked for remapping, reset gpu to activate.")
    ]


def _xid64(ctx: XidContext) -> list[str]:
    row = ctx.rng.getrandbits(32) << 4
    return [_xid(64, ctx, f"Row Remapper Error: (0x{row:016x}) - All reserved rows for bank are remapped")]


def _xid74(ctx: XidContext) -> list[str]:
    link = ctx.rng.randrange(NVLINKS_PER_H100)
    status = ctx.rng.choice(("0x10000, 0x0, 0x0", "0x0, 0x0, 0x10000", "0x0, 0x20000, 0x0"))
    return [
        _xid(74, ctx, f"NVLink: fatal error detected on link {link}({status}, 0x0, 0x0, 0x0, 0x0)"),
    ]


def _xid79(ctx: XidContext) -> list[str]:
    # Two lines for one fault; downstream dedupes.
    return [
        _xid(79, ctx, "GPU has fallen off the bus."),
        f"NVRM: GPU {ctx.pci_bus_id}: GPU has fallen off the bus.",
    ]


def _xid94(ctx: XidContext) -> list[str]:
    unit = ctx.rng.choice(("SM (0x1)", "CE User Channel (0x9)"))
    return [_xid(94, ctx, f"Contained: {unit}. RST: No, D-RST: No")]


def _xid95(ctx: XidContext) -> list[str]:
    unit = ctx.rng.choice(("FBHUB", "LTC TAG (0x2,0x0)"))
    return [_xid(95, ctx, f"Uncontained: {unit}. RST: Yes, D-RST: No")]


def _xid109(ctx: XidContext) -> list[str]:
    info = ctx.rng.choice((0x58005, 0x3C001, 0x3C046))
    return [_xid(109, ctx, f"Ch {_channel(ctx):08x}, errorString CTX SWITCH TIMEOUT, Info 0x{info:x}")]


def _xid119(ctx: XidContext) -> list[str]:
    arg = ctx.rng.choice(("0x20802a02 0x8", "0x20809004 0x608", "0x2080014b 0x5"))
    return [
        _xid(
            119,
            ctx,
            f"Timeout after 6s of waiting for RPC response from GPU{ctx.gpu_index} GSP! "
            f"Expected function 76 (GSP_RM_CONTROL) ({arg}).",
        )
    ]


def _xid120(ctx: XidContext) -> list[str]:
    what = ctx.rng.choice(("load access fault", "supervisor timer interrupt (cause:0x8000000000000005)"))
    return [_xid(120, ctx, f"GSP task exception: {what}")]


def _xid154(ctx: XidContext) -> list[str]:
    code = RECOVERY_ACTION_CODES[ctx.recovery_action]
    return [
        _xid(
            154,
            ctx,
            f"GPU recovery action changed from 0x0 (None) to 0x{code:x} ({ctx.recovery_action})",
            with_process=False,
        )
    ]


_MESSAGES: dict[int, Callable[[XidContext], list[str]]] = {
    13: _xid13,
    31: _xid31,
    43: _xid43,
    45: _xid45,
    48: _xid48,
    63: _xid63,
    64: _xid64,
    74: _xid74,
    79: _xid79,
    94: _xid94,
    95: _xid95,
    109: _xid109,
    119: _xid119,
    120: _xid120,
    154: _xid154,
}

SUPPORTED_XIDS: frozenset[int] = frozenset(_MESSAGES)


def catalog_xid(xid: int) -> bool:
    """Any other code of the Xid catalog can be simulated too: a generic driver line, and the
    effect NVIDIA's immediate action implies (``fleet.faults.effect_of``)."""
    from skills.catalog import load_catalog  # the catalog imports nothing of the project

    return xid not in _MESSAGES and load_catalog().info_or_unknown(xid).known


def xid_messages(xid: int, ctx: XidContext) -> list[str]:
    """The NVRM messages (no prefix) the driver prints for one Xid; KeyError if unsupported."""
    if catalog_xid(xid):
        from skills.catalog import load_catalog

        return [_xid(xid, ctx, load_catalog().info_or_unknown(xid).meaning.rstrip("."))]
    return _MESSAGES[xid](ctx)


def fallen_off_bus_three_lines(pci_bus_id: str, pci_device_id: str) -> list[str]:
    """The no-Xid report of a lost GPU, split over three lines."""
    return [
        f"NVRM: The NVIDIA GPU {pci_bus_id}",
        f"NVRM: (PCI ID: {pci_device_id}) installed in this system has",
        "NVRM: fallen off the bus and is not responding to commands.",
    ]
