"""Console sessions kept in NATS, so every control-plane replica behind a load balancer accepts a
session any of them started, and a restart logs nobody out.

A session (the person, its CSRF token, its expiry, messages to show on the next page) is a document
in the KV bucket ``console_sessions`` (``events.documents``: compare-and-set), whose entries NATS
drops ``SESSION_TTL_S`` after their last write. The key is a hash of the session id, so what the
bucket holds cannot be replayed as a cookie. Expiry is on the wall clock (``time.time``), the one
clock every replica shares.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import time
from typing import Protocol

from nats.js import JetStreamContext
from pydantic import BaseModel, Field

from events import subjects
from events.documents import DocumentMissing, Documents, KvDocuments, MemoryDocuments
from events.streams import CONSOLE_SESSION_TTL_S
from mcp_server.gate.policy import Principal

SESSION_TTL_S = CONSOLE_SESSION_TTL_S


class Session(BaseModel):
    """One person's console session; ``id`` is the cookie's value."""

    id: str
    principal: Principal
    csrf: str = Field(description="the token every state-changing request carries in its form")
    expires_at: float = Field(description="wall-clock seconds (time.time)")
    flash: list[str] = Field(default_factory=list, description="messages for the next page shown")

    @property
    def can_act(self) -> bool:
        return self.principal.role in ("operator", "admin")

    @property
    def expired(self) -> bool:
        return self.expires_at <= time.time()


def _key(session_id: str) -> str:
    return "s." + hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore(Protocol):
    async def start(self, principal: Principal) -> Session: ...

    async def get(self, session_id: str) -> Session | None:
        """The live session, or None (unknown, ended or expired)."""
        ...

    async def end(self, session_id: str) -> None: ...

    async def add_flash(self, session: Session, message: str) -> None: ...

    async def take_flash(self, session: Session) -> list[str]:
        """The messages waiting for the next page, removed from the session."""
        ...


class DocumentSessions:
    def __init__(self, docs: Documents[Session]) -> None:
        self.docs = docs

    async def start(self, principal: Principal) -> Session:
        session = Session(
            id=secrets.token_urlsafe(32),
            principal=principal,
            csrf=secrets.token_urlsafe(32),
            expires_at=time.time() + SESSION_TTL_S,
        )
        await self.docs.create(_key(session.id), session)
        return session

    async def get(self, session_id: str) -> Session | None:
        found = await self.docs.get(_key(session_id))
        if found is None or found.id != session_id:
            return None
        if found.expired:
            await self.end(session_id)
            return None
        return found

    async def end(self, session_id: str) -> None:
        await self.docs.delete(_key(session_id))

    async def add_flash(self, session: Session, message: str) -> None:
        session.flash.append(message)
        with contextlib.suppress(DocumentMissing):  # logged out meanwhile: nobody to show it to
            await self.docs.update(_key(session.id), lambda s: s.flash.append(message))

    async def take_flash(self, session: Session) -> list[str]:
        if not session.flash:
            return []
        taken: list[str] = []

        def take(stored: Session) -> None:
            taken[:] = stored.flash
            stored.flash = []

        try:
            await self.docs.update(_key(session.id), take)
        except DocumentMissing:
            return []
        return taken


class KvSessions(DocumentSessions):
    """Sessions in the KV bucket ``console_sessions``: shared by every replica, kept over restarts."""

    @classmethod
    async def open(cls, js: JetStreamContext) -> KvSessions:
        return cls(KvDocuments(await js.key_value(subjects.BUCKET_CONSOLE_SESSIONS), Session))


class MemorySessions(DocumentSessions):
    """Sessions of one process (a console without NATS: tests of the pages alone)."""

    def __init__(self) -> None:
        super().__init__(MemoryDocuments(Session))
