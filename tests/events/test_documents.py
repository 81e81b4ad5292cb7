"""Typed documents written compare-and-set: the KV store on a real nats-server and the memory twin
behave the same (each test runs against both)."""

from __future__ import annotations

import asyncio

import pytest
from nats.js import JetStreamContext
from pydantic import BaseModel

from events import subjects
from events.documents import (
    DocumentConflict,
    DocumentExists,
    DocumentMissing,
    Documents,
    KvDocuments,
    MemoryDocuments,
)


class Counter(BaseModel):
    name: str
    count: int = 0


@pytest.fixture(params=["memory", "kv"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def docs(kind: str, js: JetStreamContext) -> Documents[Counter]:
    if kind == "memory":
        return MemoryDocuments(Counter)
    return KvDocuments(await js.key_value(subjects.BUCKET_LEASES), Counter)


async def test_a_created_document_reads_back_with_its_revision(docs: Documents[Counter]) -> None:
    revision = await docs.create("c.a", Counter(name="a", count=1))
    found = await docs.read("c.a")
    assert found is not None and found.doc == Counter(name="a", count=1) and found.revision == revision
    assert await docs.get("c.missing") is None


async def test_create_refuses_a_key_that_holds_a_document(docs: Documents[Counter]) -> None:
    await docs.create("c.a", Counter(name="a"))
    with pytest.raises(DocumentExists):
        await docs.create("c.a", Counter(name="other"))
    assert (await docs.get("c.a")) == Counter(name="a")


async def test_replace_refuses_a_stale_revision(docs: Documents[Counter]) -> None:
    first = await docs.create("c.a", Counter(name="a"))
    second = await docs.replace("c.a", Counter(name="a", count=1), first)
    with pytest.raises(DocumentConflict):
        await docs.replace("c.a", Counter(name="a", count=99), first)
    found = await docs.read("c.a")
    assert found is not None and found.doc.count == 1 and found.revision == second


async def test_concurrent_updates_all_land(docs: Documents[Counter]) -> None:
    await docs.create("c.a", Counter(name="a"))

    def bump(c: Counter) -> None:
        c.count += 1

    await asyncio.gather(*(docs.update("c.a", bump) for _ in range(10)))
    assert (await docs.get("c.a")) == Counter(name="a", count=10)


async def test_update_of_a_missing_key_fails_unless_given_a_default(docs: Documents[Counter]) -> None:
    def bump(c: Counter) -> None:
        c.count += 1

    with pytest.raises(DocumentMissing):
        await docs.update("c.b", bump)
    made = await docs.update("c.b", bump, default=lambda: Counter(name="b"))
    assert made == Counter(name="b", count=1) == await docs.get("c.b")


async def test_a_deleted_key_is_gone_and_can_be_created_again(docs: Documents[Counter]) -> None:
    await docs.create("c.a", Counter(name="a"))
    await docs.create("c.b", Counter(name="b"))
    await docs.delete("c.a")
    assert await docs.get("c.a") is None
    assert [c.name for c in await docs.values()] == ["b"]
    await docs.create("c.a", Counter(name="a", count=2))
    assert sorted(c.count for c in await docs.values()) == [0, 2]


async def test_reads_are_copies(docs: Documents[Counter]) -> None:
    await docs.create("c.a", Counter(name="a"))
    read = await docs.get("c.a")
    assert read is not None
    read.count = 42
    assert (await docs.get("c.a")) == Counter(name="a")
