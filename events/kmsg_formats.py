"""The NVIDIA driver's kernel log messages (Xid, NVSwitch SXid, GPU fallen off the bus), as patterns.

Each pattern is matched at the position of ``NVRM:`` / ``SXid (`` in a line; the text before it
(times, host, uptime) is ``events.kmsg_prefix``'s. Every pattern must stay linear in the line's
length (``tests/events/test_kmsg_linear.py`` checks their shape): no two adjacent parts that can
match the same run of characters.
"""

from __future__ import annotations

import functools
import re

# domain:bus:device[.function], domain optional; any hex case; the domain may be 8 digits wide.
PCI_TEXT = r"(?:[0-9A-Fa-f]{1,8}:)?[0-9A-Fa-f]{1,2}:[0-9A-Fa-f]{1,2}(?:\.[0-7])?"
PCI_PARTS = re.compile(
    r"(?:(?P<dom>[0-9A-Fa-f]{1,8}):)?(?P<bus>[0-9A-Fa-f]{1,2}):(?P<dev>[0-9A-Fa-f]{1,2})(?:\.(?P<fn>[0-7]))?"
)

# Bodies, matched at the position of "NVRM:" / "SXid (". Digit runs are bounded so int() is cheap;
# ``rest`` is greedy (a lazy group with a trailing-space test costs 5x) and stripped afterwards.
XID = re.compile(rf"NVRM: Xid \((?:PCI:)?(?P<pci>{PCI_TEXT})\):\s*(?P<code>\d{{1,6}})\b\s*,?\s*(?P<rest>.*)")
PID = re.compile(r"pid=(?:'?<unknown>'?|(?P<pid>\d{1,10}))\s*(?:,\s*|$)")
NAME = re.compile(r"name=(?P<name>[^,]*)(?:,\s*|$)")  # greedy up to the comma; stripped afterwards
PREVIOUS_XID = re.compile(r"previous\s+Xid\D{0,4}(?P<code>\d{1,6})", re.IGNORECASE)
LAST_PARENS = re.compile(r"\((?P<text>[^()]*)\)[\s.]*$")
XID74_LINK = re.compile(r"\blink\s+(?P<link>\d{1,4})", re.IGNORECASE)
NVLINK5 = re.compile(
    r"(?P<sub>[A-Za-z0-9_]+)\s+(?P<sev>Fatal|Nonfatal|Non-fatal)\s+XC\d{1,4}\s+i\d{1,4}\s+"
    r"Link\s+(?P<link>-?\d{1,4})\b"
)

FELL_OFF_AT = re.compile(
    rf"NVRM: GPU at (?:PCI:)?(?P<pci>{PCI_TEXT})\s*(?::\s*)?has fallen off the bus", re.IGNORECASE
)
FELL_OFF_COLON = re.compile(
    rf"NVRM: GPU (?:PCI:)?(?P<pci>{PCI_TEXT}):\s*GPU has fallen off the bus", re.IGNORECASE
)
PCI_ID = r"\(PCI ID: [0-9A-Fa-f]{4}:[0-9A-Fa-f]{4}\)"
FELL_OFF_1 = re.compile(rf"NVRM: The NVIDIA GPU (?:PCI:)?(?P<pci>{PCI_TEXT})(?:\s*{PCI_ID})?\s*$")
FELL_OFF_2 = re.compile(rf"NVRM: (?:{PCI_ID}\s*)?installed in this system has\s*$")
FELL_OFF_3 = re.compile(r"NVRM: fallen off the bus and is not responding to commands\.?\s*$")
FELL_OFF_ONE_LINE = re.compile(
    rf"NVRM: The NVIDIA GPU (?:PCI:)?(?P<pci>{PCI_TEXT})(?:\s*{PCI_ID})?"
    r"(?:\s*installed in this system)?(?:\s*has)?\s+fallen off the bus",
    re.IGNORECASE,
)

SXID = re.compile(rf"SXid \((?:PCI:)?(?P<pci>{PCI_TEXT})\):\s*(?P<code>\d{{1,6}})\b\s*,?\s*(?P<rest>.*)")
SXID_SEVERITY = re.compile(r"(?P<sev>Fatal|Non-fatal|Nonfatal)\b", re.IGNORECASE)
SXID_LINK = re.compile(r"\bLink\s+(?P<link>-?\d{1,4})\b")
SXID_DATA = re.compile(r"Data\b\s*(?P<data>.*)")  # usually "{0x..., ...}"; kept even if truncated
SXID_SEVERITY_LINE = re.compile(r"Severity\b")


@functools.lru_cache(maxsize=1024)  # a node has a handful of PCI ids; storms repeat them
def normalise_pci_bus_id(text: str) -> str | None:
    """``"0000:18:00"``, ``"18:00.0"``, ``"00000000:1A:00.0"`` -> ``"0000:18:00.0"`` style; None if malformed.

    Lowercase hex, a domain of at least 4 digits (leading zeros beyond 4 dropped, as nvidia-smi's
    8-digit form names the same device), and always a function suffix.
    """
    m = PCI_PARTS.fullmatch(text.strip())
    if m is None:
        return None
    domain = int(m["dom"] or "0", 16)
    return f"{domain:04x}:{int(m['bus'], 16):02x}:{int(m['dev'], 16):02x}.{m['fn'] or '0'}"
