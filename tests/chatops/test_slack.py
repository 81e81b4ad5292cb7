"""The /gpu endpoint as Slack calls it, on the running platform (real HTTP, real nats-server)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2
import pytest

from aiops.platform import Platform
from aiops.settings import Settings
from tests.chatops.loopback_slack import signed, slack_side

pytestmark = pytest.mark.slow

SECRET = "8f14e45fceea167a5a36dedd4bea2543"
USERS = {"U0OPS": "olga:operator", "U0ADM": "ada:admin"}


@asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[tuple[Platform, httpx2.AsyncClient, str]]:
    settings = Settings(http_port=0, slack_signing_secret=SECRET, slack_users=USERS)
    async with Platform(settings, data_dir=tmp_path, run_clock=False) as platform:
        base = platform.http_url.removesuffix("/mcp")
        async with httpx2.AsyncClient(timeout=30) as http:
            yield platform, http, base


def command(text: str, user: str = "U0OPS", response_url: str = "") -> dict[str, str]:
    return {
        "command": "/gpu",
        "text": text,
        "user_id": user,
        "user_name": user.lower(),
        "team_id": "T0001",
        "channel_id": "C0001",
        "response_url": response_url,
    }


async def post(
    http: httpx2.AsyncClient, base: str, form: dict[str, str], *, age_s: int = 0
) -> httpx2.Response:
    body, headers = signed(SECRET, form, age_s=age_s)
    return await http.post(f"{base}/slack/commands", content=body, headers=headers)


async def test_a_signed_command_is_answered_with_block_kit(tmp_path):
    async with running(tmp_path) as (_, http, base):
        answer = await post(http, base, command("node node-003"))
        assert answer.status_code == 200
        reply = answer.json()
        assert reply["response_type"] == "ephemeral"
        assert reply["blocks"][0] == {
            "type": "header",
            "text": {"type": "plain_text", "text": "Node node-003"},
        }
        assert "0000:5d:00.0" in reply["text"]


async def test_unsigned_badly_signed_and_replayed_requests_are_refused_with_401(tmp_path):
    async with running(tmp_path) as (platform, http, base):
        body, headers = signed(SECRET, command("isolate node-003 3"))
        missing = await http.post(
            f"{base}/slack/commands", content=body, headers={"Content-Type": headers["Content-Type"]}
        )
        forged = await http.post(
            f"{base}/slack/commands", content=body, headers={**headers, "X-Slack-Signature": "v0=" + "0" * 64}
        )
        tampered = await http.post(
            f"{base}/slack/commands", content=body + b"&text=isolate+node-004+1", headers=headers
        )
        stale = await post(http, base, command("isolate node-003 3"), age_s=6 * 60)
        assert [r.status_code for r in (missing, forged, tampered, stale)] == [401, 401, 401, 401]
        assert platform.twin.isolations_since(platform.twin.spec.epoch) == []


async def test_a_request_replayed_within_the_window_is_refused_and_a_user_name_grants_nothing(tmp_path):
    async with running(tmp_path) as (platform, http, base):
        # An unmapped user id whose user_name is a mapped operator's key stays a viewer.
        body, headers = signed(SECRET, {**command("isolate node-003 3", user="U0EVIL"), "user_name": "U0OPS"})
        first = await http.post(f"{base}/slack/commands", content=body, headers=headers)
        again = await http.post(f"{base}/slack/commands", content=body, headers=headers)
        assert first.status_code == 200 and "role viewer" in first.json()["text"]
        assert again.status_code == 401 and "replayed" in again.json()["error"]
        assert platform.twin.isolations_since(platform.twin.spec.epoch) == []


async def test_malformed_command_text_gets_a_usage_reply_not_an_error(tmp_path):
    async with running(tmp_path) as (_, http, base):
        for text in ("frobnicate", "isolate node-003", 'node "x', "isolate node-999 3", "incident no-such"):
            answer = await post(http, base, command(text, response_url=""))
            assert answer.status_code == 200, text
            assert answer.json()["text"], text


async def test_an_unknown_user_is_a_viewer_and_cannot_isolate(tmp_path):
    async with running(tmp_path) as (platform, http, base), slack_side() as side:
        answer = await post(
            http,
            base,
            command("isolate node-003 3", user="U0STRANGER", response_url=f"{side.url}/response/1"),
        )
        assert answer.status_code == 200 and "Working on" in answer.json()["text"]
        await side.wait_for(lambda: side.responses)
        assert "policy denied" in side.responses[0]["text"] and "role viewer" in side.responses[0]["text"]
        assert platform.twin.isolations_since(platform.twin.spec.epoch) == []


async def test_an_operator_isolates_from_chat_and_the_answer_follows_on_the_response_url(tmp_path):
    async with running(tmp_path) as (platform, http, base), slack_side() as side:
        answer = await post(http, base, command("isolate node-003 3", response_url=f"{side.url}/response/2"))
        assert "Working on `/gpu isolate node-003 3` as olga" in answer.json()["text"]
        await side.wait_for(lambda: side.responses)
        follow_up = side.responses[0]
        assert (
            follow_up["response_type"] == "in_channel" and "isolated GPU 3 on node-003" in follow_up["text"]
        )
        [isolation] = platform.twin.isolations_since(platform.twin.spec.epoch)
        assert (isolation.node, isolation.gpu) == ("node-003", 3) and "olga" in isolation.reason


async def test_the_interactivity_endpoint_verifies_signatures_too(tmp_path):
    async with running(tmp_path) as (_, http, base):
        payload = {
            "payload": json.dumps(
                {"user": {"id": "U0OPS"}, "actions": [{"action_id": "approve", "value": "apr-1"}]}
            )
        }
        body, headers = signed(SECRET, payload)
        refused = await http.post(
            f"{base}/slack/interactivity", content=body, headers={**headers, "X-Slack-Signature": "v0=bad"}
        )
        assert refused.status_code == 401
