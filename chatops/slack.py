"""Slack's slash-command and interactivity protocols over HTTP.

- A body over ``MAX_BODY_BYTES`` gets 413 before it is read in full: a declared ``Content-Length``
  over the cap is refused unread, and the body is streamed and dropped at the cap otherwise.
- Requests are verified with slack-sdk's ``SignatureVerifier`` (HMAC over ``v0:<ts>:<body>``; a
  timestamp more than five minutes away is stale): anything unverified gets 401 and is not run.
- A verified request is run once: a repeat of its signature is a replay and gets 401
  (``chatops.replay``: a short-lived record in NATS KV that every replica shares).
- The chat user is mapped to a principal from configuration by Slack's immutable user id only
  (``user_name`` is deprecated and anyone can change theirs); an unmapped id is a viewer.
- A verified interaction this endpoint cannot read goes to ``gpu.dlq.slack`` with its exact bytes
  (when a dead-letter sink is given); unverified bodies are never stored.
- Quick commands answer in the HTTP response; slow ones (``SLOW``) answer at once and follow up
  through the ``response_url`` Slack gave us. A malformed command gets a usage reply, never a 500.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
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
from chatops.replay import MemoryReplayGuard, ReplayGuard
from contracts.client import ToolClient
from events.dead_letter import DeadLetter
from mcp_server.gate.policy import Principal

log = logging.getLogger(__name__)

SessionFactory = Callable[[Principal], AbstractAsyncContextManager[ToolClient]]
"""Opens an MCP session acting as the principal (the tools then see that identity)."""
DeadLetterSink = Callable[[DeadLetter], Awaitable[None]]

MAX_BODY_BYTES = 256 * 1024
"""Slack's slash commands are a few hundred bytes and interaction payloads tens of KB."""
SOURCE = "slack"


class _TooLarge(Exception):
    pass


def principal_for(user_id: str, users: Mapping[str, Principal]) -> Principal:
    """The principal of a Slack user id; an unmapped id is a viewer (never looked up by name)."""
    known = users.get(user_id) if user_id else None
    return known or Principal(id=f"slack:{user_id or 'unknown'}", role="viewer", kind="person")


class SlackEndpoint:
    def __init__(
        self,
        *,
        signing_secret: str,
        users: Mapping[str, Principal],
        sessions: SessionFactory,
        http: httpx2.AsyncClient | None = None,
        replay: ReplayGuard | None = None,
        dead_letters: DeadLetterSink | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.verifier = SignatureVerifier(signing_secret)
        self.replay = replay or MemoryReplayGuard()
        self.dead_letters = dead_letters
        self.max_body_bytes = max_body_bytes
        self.users = dict(users)
        self.sessions = sessions
        self.http = http or httpx2.AsyncClient(timeout=10)
        self._background: set[asyncio.Task[None]] = set()

    def routes(self, prefix: str = "/slack") -> list[Route]:
        return [
            Route(f"{prefix}/commands", self.commands, methods=["POST"]),
            Route(f"{prefix}/interactivity", self.interactivity, methods=["POST"]),
        ]

    async def _body(self, request: Request) -> bytes:
        """The body, refused (``_TooLarge``) as soon as it is known to pass the cap."""
        declared = request.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            raise _TooLarge
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.max_body_bytes:
                raise _TooLarge
        return bytes(body)

    async def _verified(self, request: Request) -> tuple[bytes, dict[str, str]] | Response:
        """The raw body and form of a verified, first-seen request, or the refusal to answer."""
        try:
            body = await self._body(request)
        except _TooLarge:
            return JSONResponse({"error": f"body over {self.max_body_bytes} bytes"}, status_code=413)
        signature = request.headers.get("X-Slack-Signature")
        if not self.verifier.is_valid(body, request.headers.get("X-Slack-Request-Timestamp"), signature):
            return JSONResponse({"error": "invalid or stale Slack signature"}, status_code=401)
        assert signature is not None  # is_valid refuses a missing signature
        if not await self.replay.first_time(signature):
            return JSONResponse({"error": "replayed Slack request"}, status_code=401)
        form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        return body, {k: v[0] for k, v in form.items()}

    async def commands(self, request: Request) -> Response:
        verified = await self._verified(request)
        if isinstance(verified, Response):
            return verified
        _, form = verified
        principal = principal_for(form.get("user_id", ""), self.users)
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
        verified = await self._verified(request)
        if isinstance(verified, Response):
            return verified
        body, form = verified
        try:
            payload = json.loads(form.get("payload", "{}"))
            user_id = str((payload.get("user") or {}).get("id", ""))
            action = payload["actions"][0]
            verb, approval_id = str(action["action_id"]), str(action["value"])
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            await self._dead(request, body, f"unreadable interaction: {type(exc).__name__}: {exc}")
            return JSONResponse({"error": "not an interaction this endpoint understands"}, status_code=400)
        if verb not in ("approve", "reject"):
            return JSONResponse({"error": f"unknown action {verb[:64]!r}"}, status_code=400)
        principal = principal_for(user_id, self.users)
        command = Command(verb, {"action": approval_id})
        if payload.get("response_url"):
            self._follow_up(principal, command, str(payload["response_url"]))
            return Response(status_code=200)
        return JSONResponse((await self.run(principal, command)).slack())

    async def _dead(self, request: Request, body: bytes, reason: str) -> None:
        if self.dead_letters is None:
            return
        headers = {k: v for k, v in request.headers.items() if k.lower().startswith("x-slack-")}
        try:
            await self.dead_letters(DeadLetter(SOURCE, request.url.path, reason, body, headers))
        except Exception:
            log.exception("could not dead-letter a Slack interaction")

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
