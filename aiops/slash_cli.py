"""``aiops slash "/gpu ..."``: the on-call commands from a terminal, for engineers without chat.

Against a running platform when ``AIOPS_MCP_URL`` (and ``AIOPS_MCP_TOKEN``) are set — the token's
principal acts, and destructive commands ask for confirmation on the terminal (``--yes`` answers
it) — else against a fleet twin of its own as ``AIOPS_MCP_PRINCIPAL``/``AIOPS_MCP_ROLE``.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client

from aiops.remote import http_client
from aiops.settings import Settings
from aiops.standalone import build_standalone_server
from chatops.blocks import Reply
from chatops.commands import SlashRunner
from contracts.client import McpToolClient


class TerminalConfirmation:
    """Answers the server's confirmation question (MCP elicitation) for the person at the terminal:
    yes when they passed ``--yes``, else asks on the terminal, else (no terminal) declines."""

    def __init__(self, assume_yes: bool, ask: Callable[[str], str] | None = None) -> None:
        self.assume_yes = assume_yes
        self.ask = ask if ask is not None else (input if sys.stdin.isatty() else None)
        self.cancelled = False
        """The person pressed Ctrl-C (or closed the input) at the question: nothing was done."""

    async def __call__(self, context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        if self.assume_yes:
            return types.ElicitResult(action="accept", content={"confirm": True})
        if self.ask is None:
            return types.ElicitResult(action="decline")
        question = params.message.rstrip()
        if not question.endswith("?"):
            question += "\nGo ahead?"
        try:
            answer = self.ask(f"{question} [y/N] ").strip().lower()
        except (KeyboardInterrupt, EOFError):
            self.cancelled = True
            return types.ElicitResult(action="cancel")
        if answer in ("y", "yes"):
            return types.ElicitResult(action="accept", content={"confirm": True})
        return types.ElicitResult(action="decline")


async def run_slash(
    text: str,
    settings: Settings,
    *,
    assume_yes: bool = False,
    confirmation: TerminalConfirmation | None = None,
) -> Reply:
    async with AsyncExitStack() as stack:
        if settings.mcp_url:
            http = await stack.enter_async_context(http_client(settings.mcp_token))
            client = await stack.enter_async_context(
                Client(
                    streamable_http_client(settings.mcp_url, http_client=http),
                    elicitation_callback=confirmation or TerminalConfirmation(assume_yes),
                )
            )
            caller = "terminal"
        else:
            server = build_standalone_server(settings, run_the_clock=False)
            client = await stack.enter_async_context(Client(server))
            caller = settings.mcp_principal
        return await SlashRunner(McpToolClient(client), caller=caller).run_text(text)


_EMOJI = re.compile(r"(?<![\w:]):[a-z][a-z0-9_+-]*:(?![\w:]) ?")
_BOLD = re.compile(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])")
_CODE = re.compile(r"`([^`\n]+)`")


def plain(text: str) -> str:
    """Slack's mrkdwn for a terminal: no emoji codes, no *bold* or `code` marks."""
    return _CODE.sub(r"\1", _BOLD.sub(r"\1", _EMOJI.sub("", text)))


def render(reply: Reply, as_json: bool) -> str:
    return json.dumps(reply.slack(), indent=2) if as_json else plain(reply.text)
