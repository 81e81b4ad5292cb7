"""Incident notifications to a chat channel: one message per incident, updated as it changes.

Listens to ``gpu.incidents.>`` and, when an incident reaches a status people care about (opened,
waiting for approval, mitigated, escalated), posts a message (``chat.postMessage``) the first time
and edits that same message (``chat.update``) afterwards — never one message per event. Message
handles live in the KV bucket ``notifications``, so a restart keeps editing the same messages.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from pydantic import BaseModel, ValidationError
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from chatops import blocks as bk
from chatops.commands import render_incident
from events.incident import Incident
from events.outbox import Outbox

log = logging.getLogger(__name__)

NOTABLE = frozenset({"mitigating", "awaiting_approval", "mitigated", "escalated", "resolved"})


def worth_a_message(incident: Incident) -> bool:
    """Whether an incident not yet in the channel should be: critical ones as soon as they open,
    others once planned and not benign (a suppressed incident never starts a message)."""
    if incident.status == "open":
        return incident.severity == "critical"
    return incident.status in NOTABLE


class Posted(BaseModel):
    channel: str
    ts: str
    status: str


class IncidentNotifier:
    def __init__(self, web: AsyncWebClient, channel: str, kv: KeyValue) -> None:
        self.web = web
        self.channel = channel
        self.kv = kv
        self.posted = 0
        self.updated = 0
        # One at a time, in order: a batch of one, retried through transient faults (events/outbox.py).
        self._out: Outbox[Incident] = Outbox("incident notifications", self._notify_each, max_batch=1)

    async def notify(self, incident: Incident) -> None:
        """Post or update the incident's message if its status changed in a way people care about."""
        key = f"n.{incident.id}"
        try:
            entry = await self.kv.get(key)
            posted = Posted.model_validate_json(entry.value or b"")
        except (KeyNotFoundError, ValidationError):
            posted = None
        if posted is not None and posted.status == incident.status:
            return  # more events, same status: no new message, no edit
        if posted is None and not worth_a_message(incident):
            return
        message = self.message(incident)
        try:
            if posted is None:
                answer = await self.web.chat_postMessage(channel=self.channel, **message)
                self.posted += 1
                posted = Posted(channel=str(answer["channel"]), ts=str(answer["ts"]), status=incident.status)
            else:
                await self.web.chat_update(channel=posted.channel, ts=posted.ts, **message)
                self.updated += 1
                posted.status = incident.status
        except SlackApiError as exc:
            log.warning("chat notification for %s failed: %s", incident.id, exc.response.get("error"))
            return
        await self.kv.put(key, posted.model_dump_json().encode())

    @staticmethod
    def message(incident: Incident) -> dict[str, Any]:
        reply = render_incident(incident.model_dump(mode="json"))
        blocks = [bk.header(f"[{incident.status}] {incident.title}"[:150]), *reply.blocks]
        return {"text": f"[{incident.status}] {incident.title}", "blocks": blocks}

    async def _notify_each(self, batch: list[Incident]) -> None:
        for incident in batch:
            await self.notify(incident)

    async def run(self, nc: NatsClient, stop: asyncio.Event) -> None:
        """Follow incident changes until ``stop``; messages are handled one at a time, in order."""

        async def on_change(msg: Msg) -> None:
            try:
                self._out.offer(Incident.model_validate_json(msg.data))
            except ValidationError:
                log.warning("ignoring a malformed incident update on %s", msg.subject)

        sub = await nc.subscribe("gpu.incidents.>", cb=on_change)
        try:
            await self._out.run(stop)
        finally:
            await sub.unsubscribe()

    async def wait_idle(self) -> None:
        await self._out.wait_idle()
