"""Slack's slash-command and interactivity protocols over HTTP.

- Requests are verified with slack-sdk's ``SignatureVerifier`` (HMAC over ``v0:<ts>:<body>``; a
  timestamp older than five minutes is a replay): anything unverified gets 401 and is not run.
- The chat user is mapped to a principal from configuration; an unknown user is a viewer.
- Quick commands answer in the HTTP response; slow ones (``SLOW``) answer at once and follow up
  through the ``response_url`` Slack gave us. A malformed command gets a usage reply, never a 500.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from urllib.parse import parse_qs

import httpx2
from slack_sdk.signature import SignatureVerifier
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from chatops.blocks import Reply
from chatops.commands import SLOW, SlashRunner
from chatops.grammar import Command, UsageError, parse
from contracts.client import ToolClient
from mcp_server.gate.policy import Principal

log = logging.getLogger(__name__)

SessionFactory = Callable[[Principal], AbstractAsyncContextManager[ToolClient]]
"""Opens an MCP session acting as the principal (the tools then see that identity)."""


def principal_for(user_id: str, user_name: str, users: Mapping[str, Principal]) -> Principal:
    known = users.get(user_id) or users.get(user_name)
    return known or Principal(id=f"slack:{user_name or user_id}", role="viewer", kind="person")


class SlackEndpoint:
    def __init__(
        self,
        *,
        signing_secret: str,
        users: Mapping[str, Principal],
        sessions: SessionFactory,
        http: httpx2.AsyncClient | None = None,
    ) -> None:
        self.verifier = SignatureVerifier(signing_secret)
        self.users = dict(users)
        self.sessions = sessions
        self.http = http or httpx2.AsyncClient(timeout=10)
        self._background: set[asyncio.Task[None]] = set()

    def routes(self, prefix: str = "/slack") -> list[Route]:
        return [
            Route(f"{prefix}/commands", self.commands, methods=["POST"]),
            Route(f"{prefix}/interactivity", self.interactivity, methods=["POST"]),
        ]

    async def _verified_form(self, request: Request) -> dict[str, str] | None:
        body = await request.body()
        ok = self.verifier.is_valid(
            body, request.headers.get("X-Slack-Request-Timestamp"), request.headers.get("X-Slack-Signature")
        )
        if not ok:
            return None
        form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        return {k: v[0] for k, v in form.items()}

    async def commands(self, request: Request) -> Response:
        form = await self._verified_form(request)
        if form is None:
            return JSONResponse({"error": "invalid or stale Slack signature"}, status_code=401)
        principal = principal_for(form.get("user_id", ""), form.get("user_name", ""), self.users)
        text = form.get("text", "")
        try:
            command = parse(text)
        except UsageError as exc:
            return JSONResponse(Reply(text=str(exc)).slack())
        if command.name in SLOW and form.get("response_url"):
            self._follow_up(principal, command, form["response_url"])
            return JSONResponse(Reply(text=f"Working on `{command.text}` as {principal.id}…").slack())
        return JSONResponse((await self.run(principal, command)).slack())

    async def interactivity(self, request: Request) -> Response:
        form = await self._verified_form(request)
        if form is None:
            return JSONResponse({"error": "invalid or stale Slack signature"}, status_code=401)
        try:
            payload = json.loads(form.get("payload", "{}"))
            user = payload.get("user", {})
            action = payload["actions"][0]
            verb, approval_id = str(action["action_id"]), str(action["value"])
        except (ValueError, KeyError, IndexError, TypeError):
            return JSONResponse({"error": "not an interaction this endpoint understands"}, status_code=400)
        if verb not in ("approve", "reject"):
            return JSONResponse({"error": f"unknown action {verb!r}"}, status_code=400)
        principal = principal_for(str(user.get("id", "")), str(user.get("username", "")), self.users)
        command = Command(verb, {"action": approval_id})
        if payload.get("response_url"):
            self._follow_up(principal, command, str(payload["response_url"]))
            return Response(status_code=200)
        return JSONResponse((await self.run(principal, command)).slack())

    async def run(self, principal: Principal, command: Command) -> Reply:
        try:
            async with self.sessions(principal) as tools:
                return await SlashRunner(tools, caller=principal.id).run(command)
        except Exception as exc:  # the reply explains; the endpoint never answers 500
            log.exception("/gpu %s failed for %s", command.name, principal.id)
            return Reply(text=f"`{command.text}` failed: {exc}")

    def _follow_up(self, principal: Principal, command: Command, response_url: str) -> None:
        async def work() -> None:
            reply = await self.run(principal, command)
            try:
                await self.http.post(response_url, json={**reply.slack(), "replace_original": False})
            except httpx2.HTTPError:
                log.exception("could not post the answer to %s", response_url)

        task = asyncio.create_task(work(), name=f"/gpu {command.name} for {principal.id}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        """Wait for follow-ups still in flight (shutdown, tests)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
