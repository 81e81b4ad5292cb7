"""The systemd units: systemd itself parses them (``systemd-analyze verify``, no unknown or invalid
directive), and each keeps the hardening docs/deploy.md promises."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.deploy.manifests import SYSTEMD, tool

UNITS = sorted(SYSTEMD.glob("*.service"))
HARDENING = {
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "NoNewPrivileges": "yes",
    "DynamicUser": "yes",
    "RestrictNamespaces": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "SystemCallArchitectures": "native",
}


def directives(unit: Path) -> dict[str, list[str]]:
    """The [Service] section: directive -> its values in order (a directive may repeat)."""
    out: dict[str, list[str]] = {}
    section = None
    for line in unit.read_text().splitlines():
        if re.fullmatch(r"\[\w+\]", line):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


@pytest.mark.parametrize("unit", UNITS, ids=[u.name for u in UNITS])
def test_every_unit_is_hardened(unit: Path) -> None:
    service = directives(unit)
    for key, value in HARDENING.items():
        assert service.get(key) == [value], f"{unit.name}: {key}={service.get(key)}"
    assert "@system-service" in service["SystemCallFilter"]
    assert service["ExecStart"][0].startswith("/opt/gpu-aiops/bin/aiops ")


def test_only_the_node_agent_holds_a_capability_and_it_is_syslog() -> None:
    for unit in UNITS:
        service = directives(unit)
        if unit.name == "aiops-node.service":
            assert service["AmbientCapabilities"] == ["CAP_SYSLOG"]
            assert service["CapabilityBoundingSet"] == ["CAP_SYSLOG"]
            assert service["DevicePolicy"] == ["closed"]
            assert "/dev/kmsg r" in service["DeviceAllow"]
            assert service["ProtectKernelLogs"] == ["no"]  # =yes would hide /dev/kmsg
            assert service["ExecStart"] == ["/opt/gpu-aiops/bin/aiops node"]
        else:
            assert service["AmbientCapabilities"] == [""]
            assert service["CapabilityBoundingSet"] == [""]
            assert service["PrivateDevices"] == ["yes"]


@pytest.mark.slow
def test_systemd_parses_every_unit_without_a_complaint(tmp_path: Path) -> None:
    """``systemd-analyze verify`` on each unit, with a stand-in binary and settings files (the real
    ones live on the host); any warning (an unknown or misspelt directive) fails."""
    analyze = tool("systemd-analyze", "apt-get install systemd")
    for unit in UNITS:
        text = unit.read_text().replace("/opt/gpu-aiops/bin/aiops", "/bin/true")
        text = re.sub(r"^EnvironmentFile=", "EnvironmentFile=-", text, flags=re.M)
        text = re.sub(r"^LoadCredential=.*$", "", text, flags=re.M)
        copy = tmp_path / unit.name
        copy.write_text(text)
        done = subprocess.run(
            [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
        )
        complaints = [line for line in (done.stdout + done.stderr).splitlines() if unit.name in line]
        assert done.returncode == 0 and not complaints, f"{unit.name}: {done.stdout}{done.stderr}"
    bogus = tmp_path / "bogus.service"
    bogus.write_text("[Service]\nExecStart=/bin/true\nProtectSystme=strict\n")
    done = subprocess.run(
        [analyze, "verify", str(bogus)], capture_output=True, text=True, timeout=60, check=False
    )
    assert "ProtectSystme" in done.stderr  # the check sees a misspelt directive
