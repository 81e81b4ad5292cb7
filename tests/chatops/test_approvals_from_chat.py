"""An approval from chat resumes the parked run, end to end: the incident's notification carries
approve / reject buttons, an operator clicks Approve, the agent acts once; a viewer's click does not."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import httpx2
import pytest

from aiops.settings import FreezeWindowSetting
from events.incident import Incident
from fleet import DEFAULT_EPOCH
from tests.agents.safety_support import audit_records, incident_where, running
from tests.chatops.loopback_slack import signed, slack_side

pytestmark = pytest.mark.slow

SECRET = "0cc175b9c0f1b6a831c399e269772661"
USERS = {"U0OPS": "olga:operator"}
FREEZE = [
    FreezeWindowSetting(start=DEFAULT_EPOCH, end=DEFAULT_EPOCH + timedelta(days=30), reason="year-end run")
]


def waiting(incident: Incident) -> bool:
    return incident.status == "awaiting_approval" and bool(incident.pending_approvals)


def click(verb: str, approval_id: str, user: str, response_url: str) -> dict[str, str]:
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower()},
        "actions": [{"action_id": verb, "value": approval_id, "type": "button"}],
        "response_url": response_url,
    }
    return {"payload": json.dumps(payload)}


async def test_approve_from_a_chat_button_resumes_the_parked_run_and_a_viewer_cannot(tmp_path: Path) -> None:
    async with (
        slack_side() as side,
        running(
            tmp_path,
            http=True,
            freeze_windows=FREEZE,
            slack_signing_secret=SECRET,
            slack_users=USERS,
            slack_bot_token="xoxb-test",
            slack_channel="C0ONCALL",
            slack_api_url=f"{side.url}/api/",
        ) as platform,
    ):
        twin = platform.twin
        twin.inject_xid("node-003", 3, 79)
        parked = await incident_where(platform, waiting, what="the isolation to wait for approval")
        [approval] = parked.pending_approvals
        # The channel message of the waiting incident carries the buttons.
        await side.wait_for(
            lambda: any(approval.id in json.dumps(body.get("blocks", "")) for _, body in side.calls)
        )
        base = platform.http_url.removesuffix("/mcp")
        async with httpx2.AsyncClient(timeout=30) as http:
            body, headers = signed(
                SECRET, click("approve", approval.id, "U0STRANGER", f"{side.url}/response/v")
            )
            viewer = await http.post(f"{base}/slack/interactivity", content=body, headers=headers)
            await side.wait_for(lambda: len(side.responses) >= 1)
            assert not twin.gpu("node-003", 3).isolated

            body, headers = signed(SECRET, click("approve", approval.id, "U0OPS", f"{side.url}/response/o"))
            operator = await http.post(f"{base}/slack/interactivity", content=body, headers=headers)
            await side.wait_for(lambda: len(side.responses) >= 2)
        await incident_where(
            platform,
            lambda i: i.id == parked.id and any(a.tool == "isolate_gpu" and a.ok for a in i.actions),
            what="the approved isolation to run",
        )
        audit = await audit_records(platform)

    assert viewer.status_code == 200 and operator.status_code == 200
    assert "policy denied" in side.responses[0]["text"] and "role viewer" in side.responses[0]["text"]
    assert "approved isolate_gpu on node-003/gpu3" in side.responses[1]["text"]
    assert twin.gpu("node-003", 3).isolated
    isolations = [r for r in audit if r.tool == "isolate_gpu" and r.decision == "allow" and not r.replayed]
    assert len(isolations) == 1 and isolations[0].principal == "triage-agent"
    approvals = [(r.principal, r.decision) for r in audit if r.tool == "approve_action"]
    assert approvals == [("slack:U0STRANGER", "deny"), ("olga", "allow")]
