"""The chat side of ``aiops up``: /gpu slash commands on the HTTP port (when a Slack signing secret
is configured) and incident notifications to a channel (when a bot token and channel are)."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial

from mcp.server import MCPServer
from nats.js import JetStreamContext
from slack_sdk.web.async_client import AsyncWebClient

from aiops.build import build_server, parse_tokens
from aiops.settings import Settings
from chatops.notifier import IncidentNotifier
from chatops.replay import KvReplayGuard
from chatops.sessions import PrincipalSessions
from chatops.slack import SlackEndpoint
from events import subjects
from events.dead_letter import publish_dead_letter
from mcp_server.deps import ServerDeps


@dataclass
class Chat:
    sessions: PrincipalSessions
    """An MCP session per chat user (and per person the console or the demo acts for)."""
    slack: SlackEndpoint | None = None
    notify: tuple[AsyncWebClient, str] | None = None
    """The Slack client and channel incident notifications go to, if configured."""

    async def notifier(self, js: JetStreamContext) -> IncidentNotifier | None:
        """The notifier of the configured channel (None: none configured); its caller runs it."""
        if self.notify is None:
            return None
        web, channel = self.notify
        return IncidentNotifier(web, channel, await js.key_value(subjects.BUCKET_NOTIFICATIONS))


def serve_chat(
    settings: Settings, deps: ServerDeps, js: JetStreamContext, people: MCPServer, stack: AsyncExitStack
) -> Chat:
    """The chat sessions; the slash command routes on ``people`` (the HTTP server's MCP server)."""
    s = settings
    chat = Chat(PrincipalSessions(lambda p: build_server(s, deps, principal=p)))
    if s.slack_signing_secret:
        chat.slack = SlackEndpoint(
            signing_secret=s.slack_signing_secret,
            users=parse_tokens(s.slack_users),
            sessions=chat.sessions.session,
            replay=KvReplayGuard(js),
            dead_letters=partial(publish_dead_letter, js),
        )
        for route in chat.slack.routes():
            people.custom_route(route.path, methods=["POST"])(route.endpoint)
        stack.push_async_callback(chat.slack.drain)
    if s.slack_bot_token and s.slack_channel:
        chat.notify = (AsyncWebClient(token=s.slack_bot_token, base_url=s.slack_api_url), s.slack_channel)
    return chat
