"""Crash safety of the agent: SIGKILL it at every step of a swap-spare mitigation, start it again,
and every run completes exactly once with no mutation repeated.

A real nats-server, the platform (fleet twin, MCP server over HTTP) in one process and the agent
(an MCP client with its own token) in another. A GPU falls off the bus under train-01; the plan is
isolate-gpu then swap-spare (swap a spare in, restart from the checkpoint, confirm the job trains
at its baseline again). The kill points are every distinct state the runs persist in a clean run
(the census: before and after each step, at each run's end, while the confirmation waits) and the
moment right after the server carried out each mutation but before the agent recorded it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.agents.crash_harness import Outcome, scenario, zygote

pytestmark = pytest.mark.slow

MUTATIONS = ["isolate_gpu", "restart_from_checkpoint", "swap_spare"]


def problems(out: Outcome) -> list[str]:
    """Everything that says the run did not complete exactly once."""
    found = []
    if out.kill and not out.killed:
        found.append("the kill point was never reached")
    incident = out.incident
    assert incident is not None
    # The deferred reboot of node-003 (agents/repairs.py) may start once the swap is over: its
    # mutations are the repair's own (keys "repair/..."), each carried out at most once.
    mitigation = [(tool, key) for tool, key in out.mutations() if not (key or "").startswith("repair/")]
    repair_keys = [key for _, key in out.mutations() if (key or "").startswith("repair/")]
    if len(set(repair_keys)) != len(repair_keys):
        found.append(f"repair mutations repeated: {repair_keys}")
    done = sorted(tool for tool, _ in mitigation)
    if done != MUTATIONS:
        found.append(f"mutations carried out {done}, expected each of {MUTATIONS} once")
    keys = [key for _, key in mitigation]
    # Keys come from the fault and the action: <cluster>/<target>/<tool>/<fault epoch>/...
    of_fault = f"/{incident.fault_epoch}/" if incident.fault_epoch else "missing fault epoch"
    if len(set(keys)) != len(keys) or not all(
        k and k.startswith(f"{incident.cluster}/") and of_fault in k for k in keys
    ):
        found.append(f"idempotency keys {keys}")
    train = out.fleet["jobs"]["train-01"]
    if out.fleet["isolations"] != [["node-003", 3]]:
        found.append(f"isolations {out.fleet['isolations']}")
    if (train["restarts"], len(train["replacements"]), train["state"]) != (1, 1, "running"):
        found.append(f"train-01 {train}")
    contained = [a.tool for a in incident.actions if a.ok and not a.run_id.startswith("repair/")]
    if contained != ["isolate_gpu", "swap_spare", "restart_from_checkpoint"]:
        found.append(f"incident actions {[(a.tool, a.ok) for a in incident.actions]}")
    acting = [(i.id, i.kind) for i in out.others if any(a.ok for a in i.actions)]
    if acting:
        found.append(f"other incidents acted: {acting}")
    statuses = {name: (s.status, s.confirm_status) for name, s in out.runs.items()}
    if statuses != {"isolate-gpu": ("succeeded", "none"), "swap-spare": ("succeeded", "confirmed")}:
        found.append(f"runs {statuses}")
    return found


async def test_the_agent_killed_at_any_step_of_a_swap_spare_run_finishes_every_run_exactly_once(
    tmp_path: Path, record_property: pytest.RecordProperty
) -> None:
    failures: dict[str, list[str]] = {}
    async with zygote(tmp_path / "processes.log") as z:
        clean = await scenario(z, tmp_path / "census", census=True)
        assert problems(clean) == []
        # The mitigation's own runs (the deferred repair that may follow has its runs, not killed here).
        mitigation = [sig for sig in clean.census if sig.startswith(("isolate-gpu:", "swap-spare:"))]
        kill_points = [("--kill-at", sig) for sig in dict.fromkeys(mitigation)]
        kill_points += [
            ("--kill-after-answer", tool) for tool in ("isolate_gpu", "swap_spare", "restart_from_checkpoint")
        ]
        # Each scenario has a nats-server and processes of its own: run a few side by side.
        gate = asyncio.Semaphore(3)

        async def one(n: int, kill: tuple[str, str]) -> None:
            async with gate:
                out = await scenario(z, tmp_path / f"kill-{n}", *kill)
            if found := problems(out):
                failures[" ".join(kill)] = found

        await asyncio.gather(*(one(n, kill) for n, kill in enumerate(kill_points)))

    record_property("kill_points", len(kill_points))
    print(f"\n{len(kill_points)} kill points, {len(kill_points) - len(failures)} completed exactly once")
    assert len(kill_points) >= 25
    assert any("swap=running" in sig for _, sig in kill_points)
    assert any("resumed=waiting" in sig for _, sig in kill_points)
    assert failures == {}
