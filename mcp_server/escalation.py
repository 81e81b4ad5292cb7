"""Hardware tickets and pages to on-call, as records.

There is no ticketing or paging system on these machines, so the record *is* the ticket and the
page: a ``Ticket`` on ``gpu.tickets.<cluster>`` and a ``Page`` on ``gpu.pages.<cluster>``, kept in
the ``GPU_ESCALATIONS`` stream and deduplicated on their ids. A bridge to a real system (a Jira
project, PagerDuty) subscribes to those subjects.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Protocol

from nats.js import JetStreamContext
from pydantic import BaseModel, Field

from events import subjects
from events.models import utcnow

Urgency = Literal["low", "high"]


class Ticket(BaseModel):
    id: str
    cluster: str
    node: str
    gpu: int | None = None
    summary: str
    evidence: list[str] = Field(default_factory=list)
    incident_id: str | None = None
    opened_by: str
    opened_at: datetime = Field(default_factory=utcnow)


class Page(BaseModel):
    id: str
    cluster: str
    summary: str
    urgency: Urgency = "high"
    ticket: str | None = None
    incident_id: str | None = None
    paged_by: str
    paged_at: datetime = Field(default_factory=utcnow)


class EscalationDesk(Protocol):
    async def open_ticket(self, ticket: Ticket) -> bool:
        """Record the ticket; False when it was already recorded (same id)."""
        ...

    async def page(self, page: Page) -> bool: ...


class JetStreamDesk:
    def __init__(self, js: JetStreamContext) -> None:
        self._js = js

    async def open_ticket(self, ticket: Ticket) -> bool:
        ack = await self._js.publish(
            subjects.tickets(ticket.cluster),
            ticket.model_dump_json().encode(),
            headers={"Nats-Msg-Id": ticket.id},
        )
        return not ack.duplicate

    async def page(self, page: Page) -> bool:
        ack = await self._js.publish(
            subjects.pages(page.cluster), page.model_dump_json().encode(), headers={"Nats-Msg-Id": page.id}
        )
        return not ack.duplicate


class MemoryDesk:
    def __init__(self) -> None:
        self.tickets: dict[str, Ticket] = {}
        self.pages: dict[str, Page] = {}

    async def open_ticket(self, ticket: Ticket) -> bool:
        new = ticket.id not in self.tickets
        self.tickets.setdefault(ticket.id, ticket)
        return new

    async def page(self, page: Page) -> bool:
        new = page.id not in self.pages
        self.pages.setdefault(page.id, page)
        return new
