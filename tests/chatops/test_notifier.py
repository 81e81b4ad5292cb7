"""Incident notifications: one chat message per incident, edited as the incident moves on."""

from __future__ import annotations

import pytest

from aiops.demo import wait_for_incidents
from aiops.platform import Platform
from aiops.settings import Settings
from tests.chatops.loopback_slack import slack_side

pytestmark = pytest.mark.slow


async def test_each_incident_gets_one_message_that_is_updated_and_benign_ones_stay_quiet(tmp_path):
    async with slack_side() as side:
        settings = Settings(
            http_port=0,
            slack_bot_token="xoxb-test",
            slack_channel="C0ONCALL",
            slack_api_url=f"{side.url}/api/",
        )
        async with Platform(settings, data_dir=tmp_path, serve_http=False, run_clock=False) as platform:
            platform.twin.advance(45 * 60)
            platform.twin.inject_xid("node-003", 3, 79)
            platform.twin.inject_xid("node-013", 5, 43, pid=4242, process="python3")
            incidents = await wait_for_incidents(platform, 2, timeout_s=20)
            assert platform.notifier is not None
            await side.wait_for(lambda: any("[mitigated]" in c[1].get("text", "") for c in side.calls))
            await platform.notifier.wait_idle()

    posts = [body for method, body in side.calls if method == "chat.postMessage"]
    updates = [body for method, body in side.calls if method == "chat.update"]
    [post] = posts  # the Xid 79 incident only; the benign Xid 43 never posts
    assert post["channel"] == "C0ONCALL" and "GPU_HAS_FALLEN_OFF_THE_BUS" in post["text"]
    assert updates and all(u["ts"] == updates[0]["ts"] for u in updates)
    assert updates[-1]["text"].startswith("[mitigated]")
    statuses = [u["text"].split("]")[0].strip("[") for u in updates]
    assert len(statuses) == len(set(statuses))  # an edit per status change, not per event
    assert {i.status for i in incidents} == {"mitigated", "suppressed"}
