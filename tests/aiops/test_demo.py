"""`aiops demo` as a new user runs it: exits 0, prints the mitigated incident, leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def nats_servers() -> set[int]:
    pids = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if b"nats-server" in cmd and b"aiops-demo-" in cmd:
                pids.add(int(proc.name))
    return pids


@pytest.mark.slow
def test_the_demo_tells_every_fault_story_and_leaves_no_process_behind():
    before = nats_servers()
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-m", "aiops.cli", "demo"], capture_output=True, text=True, timeout=120, env=env
    )
    failed = [line for line in done.stdout.splitlines() if "✗" in line]
    assert done.returncode == 0, "\n".join(failed) or (done.stdout + done.stderr)[-5000:]
    out = done.stdout
    assert "Xid 79 GPU_HAS_FALLEN_OFF_THE_BUS" in out
    assert "isolate_gpu done" in out and "restart_from_checkpoint done" in out
    assert "status mitigated" in out and "status suppressed" in out
    assert "GPU isolated, job restarted from its checkpoint" in out
    # The faults without an Xid of their own, and the one with two signals.
    assert "Hang: train-02 stopped at step" in out and "first stalled rank(s) 9 on node-010" in out
    assert "✓ hang pinned on the first-stalled rank's node" in out
    assert "Xid 48 GPU_ECC_DBE on node-005 GPU 2" in out
    assert "✓ double-bit ECC error: one incident from two signals" in out
    assert "Leaf switch leaf-02 suspected" in out
    assert "✓ slow leaf switch: one incident blames leaf-02, no node touched" in out
    assert "✗" not in out
    assert nats_servers() - before == set()
