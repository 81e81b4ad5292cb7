"""Approvals end to end on the embedded platform (real nats-server): the agent parks a run that
needs a person, a person approves (the run resumes and acts once) or rejects it (the run is
abandoned), or nobody answers (it expires) — each on the incident's timeline and in the audit."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from aiops.settings import FreezeWindowSetting
from events.incident import Incident
from fleet import DEFAULT_EPOCH
from mcp_server.policy import Principal
from tests.agents.safety_support import OPERATOR_TOKEN, audit_records, incident_where, running

pytestmark = pytest.mark.slow

OLGA = Principal(id="olga", role="operator", kind="person")
FREEZE = [
    FreezeWindowSetting(start=DEFAULT_EPOCH, end=DEFAULT_EPOCH + timedelta(days=30), reason="year-end run")
]


async def cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run ``aiops <args>`` as a person at a terminal would (the platform keeps serving meanwhile)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aiops.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode()


def waiting(incident: Incident) -> bool:
    return incident.status == "awaiting_approval" and bool(incident.pending_approvals)


async def test_a_person_approves_with_the_cli_then_rejects_and_the_run_is_abandoned(tmp_path: Path) -> None:
    async with running(tmp_path, http=True, freeze_windows=FREEZE) as platform:
        twin = platform.twin
        twin.inject_xid("node-003", 3, 79)
        parked = await incident_where(platform, waiting, what="the isolation to wait for approval")
        [first] = parked.pending_approvals
        isolated_before = twin.gpu("node-003", 3).isolated

        env = {**os.environ, "AIOPS_MCP_URL": platform.http_url, "AIOPS_MCP_TOKEN": OPERATOR_TOKEN}
        listed = await cli(env, "approvals")
        approved = await cli(env, "approve", first.id, "-m", "GPU is gone, go")
        second = await incident_where(
            platform,
            lambda i: waiting(i) and i.pending_approvals[0].id != first.id,
            what="the swap to wait for its own approval",
        )
        [swap] = second.pending_approvals
        async with platform.sessions.session(OLGA) as tools:
            rejected = await tools.call(
                "reject_action", {"approval_id": swap.id, "comment": "keep the spares"}
            )
        done = await incident_where(
            platform, lambda i: i.status == "escalated", what="the incident to escalate"
        )
        audit = await audit_records(platform)

    assert (first.action, first.target, first.step) == ("isolate_gpu", "node-003/gpu3", "isolate")
    assert "a change freeze is on" in first.summary
    assert first.expires_at is not None
    assert not isolated_before
    assert listed[0] == 0 and first.id in listed[1] and "isolate_gpu" in listed[1]
    assert approved[0] == 0, approved[1]
    assert "approved isolate_gpu on node-003/gpu3" in approved[1]
    assert swap.action == "swap_spare"
    assert rejected.ok
    assert twin.gpu("node-003", 3).isolated  # the approved action ran ...
    assert twin.job("train-01").replacements == []  # ... the rejected one did not
    assert done.pending_approvals == []
    assert [(a.tool, a.ok) for a in done.actions] == [("isolate_gpu", True), ("swap_spare", False)]
    notes = [(e.what, e.detail) for e in done.timeline]
    assert ("approved", f"{first.id} approved by olga: GPU is gone, go; the run resumes") in notes
    assert notes[-1][0] == "escalated to a person"
    assert f"approval {swap.id} rejected by olga: keep the spares" in notes[-1][1]
    assert "the run is abandoned" in notes[-1][1]
    trail = [(r.principal, r.tool, r.decision, r.ok) for r in audit if not r.replayed]
    assert trail == [
        ("triage-agent", "isolate_gpu", "approval_required", False),
        ("olga", "approve_action", "allow", True),
        ("triage-agent", "isolate_gpu", "allow", True),
        ("triage-agent", "swap_spare", "approval_required", False),
        ("olga", "reject_action", "allow", True),
    ]


async def test_an_unanswered_approval_expires_and_the_run_is_abandoned(tmp_path: Path) -> None:
    async with running(tmp_path, freeze_windows=FREEZE, approval_ttl_s=0.5) as platform:
        platform.twin.inject_xid("node-013", 1, 79)  # an idle node: the plan is the isolation alone
        parked = await incident_where(platform, waiting, what="the isolation to wait for approval")
        done = await incident_where(
            platform, lambda i: i.status == "escalated", what="the approval to expire"
        )
        audit = await audit_records(platform)

    [request] = parked.pending_approvals
    assert done.pending_approvals == []
    assert f"approval {request.id} expired unanswered" in done.timeline[-1].detail
    assert not platform.twin.gpu("node-013", 1).isolated
    [action] = done.actions
    assert (action.tool, action.ok) == ("isolate_gpu", False)
    assert (action.error or "").startswith(f"approval {request.id} expired unanswered at")
    expired = [r for r in audit if r.tool == "expire_approval"]
    assert [(r.decision, r.arguments["approval_id"]) for r in expired] == [("deny", request.id)]
