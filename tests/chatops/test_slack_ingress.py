"""What the Slack endpoint lets in: identity by user id only, one run per signed request (the record
in NATS KV shared by replicas, or its in-memory twin), a body cap enforced before the body is read,
an unreadable interaction dead-lettered with its bytes. Real Starlette requests; real nats-server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from nats.js import JetStreamContext
from slack_sdk.signature import SignatureVerifier
from starlette.requests import Request

from chatops.replay import KvReplayGuard, MemoryReplayGuard, ReplayGuard
from chatops.slack import MAX_BODY_BYTES, SlackEndpoint, principal_for
from contracts.client import ToolClient
from events.dead_letter import DeadLetter
from mcp_server.gate.policy import Principal
from tests.chatops.loopback_slack import signed

SECRET = "8f14e45fceea167a5a36dedd4bea2543"
OLGA = Principal(id="olga", role="operator", kind="person")


def test_an_unmapped_user_id_is_a_viewer_whatever_its_user_name():
    users = {"U0OPS": OLGA, "olga": OLGA}
    assert principal_for("U0OPS", users) is OLGA
    stranger = principal_for("U0EVIL", users)
    assert stranger.role == "viewer" and stranger.id == "slack:U0EVIL"
    assert principal_for("", users).role == "viewer"


class Body:
    """An ASGI receive() over a body sent in chunks, counting what the endpoint pulled."""

    def __init__(self, body: bytes, chunk: int = 64 * 1024) -> None:
        self.chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)] or [b""]
        self.pulled = 0

    async def __call__(self) -> dict[str, Any]:
        self.pulled += 1
        part = self.chunks[self.pulled - 1]
        return {"type": "http.request", "body": part, "more_body": self.pulled < len(self.chunks)}


def request(path: str, body: Body, headers: dict[str, str]) -> Request:
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "query_string": b"",
    }
    return Request(scope, body)


@asynccontextmanager
async def no_session(principal: Principal) -> AsyncIterator[ToolClient]:
    raise AssertionError(f"nothing here should reach the tools (as {principal.id})")
    yield  # pragma: no cover


def endpoint(replay: ReplayGuard | None = None, dead: list[DeadLetter] | None = None) -> SlackEndpoint:
    async def sink(letter: DeadLetter) -> None:
        assert dead is not None
        dead.append(letter)

    return SlackEndpoint(
        signing_secret=SECRET,
        users={"U0OPS": OLGA},
        sessions=no_session,
        replay=replay,
        dead_letters=sink if dead is not None else None,
    )


def usage_command() -> dict[str, str]:
    return {"command": "/gpu", "text": "frobnicate", "user_id": "U0OPS", "response_url": ""}


@pytest.mark.parametrize("where", ["memory", "nats"])
async def test_a_signed_request_runs_once_and_its_replay_is_refused(where, js: JetStreamContext):
    guard: ReplayGuard = MemoryReplayGuard() if where == "memory" else KvReplayGuard(js)
    slack = endpoint(guard)
    body, headers = signed(SECRET, usage_command())
    first = await slack.commands(request("/slack/commands", Body(body), headers))
    again = await slack.commands(request("/slack/commands", Body(body), headers))
    assert first.status_code == 200 and again.status_code == 401
    assert b"replayed" in bytes(again.body)
    other_body, other_headers = signed(SECRET, {**usage_command(), "text": "frobnicate more"})
    other = await slack.commands(request("/slack/commands", Body(other_body), other_headers))
    assert other.status_code == 200


async def test_two_replicas_sharing_nats_refuse_the_same_request_on_the_second(js):
    body, headers = signed(SECRET, usage_command())
    one, two = endpoint(KvReplayGuard(js)), endpoint(KvReplayGuard(js))
    assert (await one.commands(request("/slack/commands", Body(body), headers))).status_code == 200
    assert (await two.commands(request("/slack/commands", Body(body), headers))).status_code == 401


async def test_the_memory_record_forgets_a_signature_after_the_window():
    now = [0.0]
    guard = MemoryReplayGuard(window_s=600, clock=lambda: now[0])
    assert await guard.first_time("v0=abc") and not await guard.first_time("v0=abc")
    now[0] = 601
    assert await guard.first_time("v0=abc")


async def test_a_declared_64_mb_body_is_refused_without_reading_it():
    huge = Body(b"x" * (64 * 1024 * 1024), chunk=1024 * 1024)
    response = await endpoint().commands(
        request("/slack/commands", huge, {"Content-Length": str(64 * 1024 * 1024)})
    )
    assert response.status_code == 413 and huge.pulled == 0


async def test_an_undeclared_oversized_body_is_read_only_up_to_the_cap():
    huge = Body(b"x" * (64 * 1024 * 1024), chunk=64 * 1024)
    response = await endpoint().commands(request("/slack/commands", huge, {}))
    assert response.status_code == 413
    assert huge.pulled <= MAX_BODY_BYTES // (64 * 1024) + 1 < len(huge.chunks)


async def test_a_verified_interaction_it_cannot_read_is_dead_lettered_with_its_bytes():
    dead: list[DeadLetter] = []
    form = {"payload": json.dumps({"user": "not-an-object", "actions": "none"})}
    body, headers = signed(SECRET, form)
    body += b"&x=%FF%FE"  # non-UTF-8 once decoded: kept as sent
    headers["X-Slack-Signature"] = (
        SignatureVerifier(SECRET).generate_signature(
            timestamp=headers["X-Slack-Request-Timestamp"], body=body
        )
        or ""
    )
    response = await endpoint(dead=dead).interactivity(request("/slack/interactivity", Body(body), headers))
    assert response.status_code == 400
    [letter] = dead
    assert letter.payload == body and letter.source == "slack" and "unreadable" in letter.reason
    assert letter.headers["x-slack-signature"] == headers["X-Slack-Signature"]
