"""Listing a KV bucket in one pass, on a real nats-server."""

from __future__ import annotations

from nats.js import JetStreamContext

from events import subjects
from events.kv import latest_values


async def test_an_empty_bucket_lists_nothing(js: JetStreamContext) -> None:
    assert await latest_values(await js.key_value(subjects.BUCKET_APPROVALS)) == []


async def test_the_latest_value_of_every_live_key_is_listed(js: JetStreamContext) -> None:
    kv = await js.key_value(subjects.BUCKET_APPROVALS)
    await kv.put("a.1", b"first")
    await kv.put("a.1", b"second")
    await kv.put("a.2", b"other")
    await kv.put("a.3", b"gone")
    await kv.delete("a.3")

    assert sorted(await latest_values(kv)) == [b"other", b"second"]


async def test_listing_often_does_not_pile_up_consumers(js: JetStreamContext) -> None:
    kv = await js.key_value(subjects.BUCKET_APPROVALS)
    await kv.put("a.1", b"x")

    for _ in range(300):  # a watch loop listing once a second for five minutes
        assert await latest_values(kv) == [b"x"]
