"""Declaring the platform's streams and buckets, on a real nats-server."""

from __future__ import annotations

from nats.aio.client import Client as NatsClient
from nats.js.api import KeyValueConfig

from events import subjects
from events.streams import ensure_jetstream


async def test_declaring_twice_changes_nothing_and_buckets_allow_direct_gets(nc: NatsClient) -> None:
    js = nc.jetstream()
    await ensure_jetstream(js)
    await ensure_jetstream(js)

    info = await js.stream_info(f"KV_{subjects.BUCKET_INCIDENTS}")
    assert info.config.allow_direct
    kv = await js.key_value(subjects.BUCKET_INCIDENTS)
    await kv.put("inc.a", b"kept")
    assert (await kv.get("inc.a")).value == b"kept"


async def test_a_bucket_an_older_version_made_without_direct_gets_is_updated_in_place(nc: NatsClient) -> None:
    js = nc.jetstream()
    old = await js.create_key_value(KeyValueConfig(bucket=subjects.BUCKET_INCIDENTS, history=5))
    await old.put("inc.a", b"from before")
    assert not (await js.stream_info(f"KV_{subjects.BUCKET_INCIDENTS}")).config.allow_direct

    await ensure_jetstream(js)

    info = await js.stream_info(f"KV_{subjects.BUCKET_INCIDENTS}")
    assert info.config.allow_direct
    assert (await (await js.key_value(subjects.BUCKET_INCIDENTS)).get("inc.a")).value == b"from before"
