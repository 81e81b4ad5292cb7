"""Declaring the platform's streams and buckets, on a real nats-server."""

from __future__ import annotations

from dataclasses import replace

import pytest
from nats.aio.client import Client as NatsClient
from nats.js.api import KeyValueConfig

from events import subjects
from events.streams import DAY_S, JetStreamLayout, ensure_jetstream, merge_stream


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


async def test_declaring_again_with_a_lower_retention_or_fewer_replicas_lowers_nothing_and_says_so(
    nc: NatsClient,
) -> None:
    js = nc.jetstream()
    await ensure_jetstream(js, JetStreamLayout(events_max_age_s=30 * DAY_S, idempotency_ttl_s=14 * DAY_S))

    kept = await ensure_jetstream(js)  # the defaults: 14 days of events, 7 of idempotency keys

    assert (await js.stream_info(subjects.STREAM_EVENTS)).config.max_age == 30 * DAY_S
    assert (await js.stream_info(f"KV_{subjects.BUCKET_IDEMPOTENCY}")).config.max_age == 14 * DAY_S
    assert any(note.startswith("GPU_EVENTS: keeps max_age=") for note in kept)
    assert any(note.startswith("KV_idempotency: keeps max_age=") for note in kept)
    assert (
        await ensure_jetstream(js, JetStreamLayout(events_max_age_s=30 * DAY_S, idempotency_ttl_s=14 * DAY_S))
        == []
    )


async def test_a_longer_retention_in_the_layout_is_applied(nc: NatsClient) -> None:
    js = nc.jetstream()
    await ensure_jetstream(js)
    assert await ensure_jetstream(js, JetStreamLayout(dlq_max_age_s=90 * DAY_S)) == []
    assert (await js.stream_info(subjects.STREAM_DLQ)).config.max_age == 90 * DAY_S


def test_an_unchanged_stream_is_not_updated_and_fewer_replicas_are_kept() -> None:
    [events, *_] = JetStreamLayout(replicas=3).streams()
    same, kept = merge_stream(events, {"num_replicas": 3, "max_age": events.max_age}, "GPU_EVENTS")
    assert same == events and kept == []
    lower, kept = merge_stream(events, {"num_replicas": 1}, "GPU_EVENTS")
    assert lower.num_replicas == 3
    assert kept == ["GPU_EVENTS: keeps num_replicas=3 (the layout asks 1; never lowered)"]
    unlimited = replace(events, max_age=0)
    assert merge_stream(unlimited, {"max_age": DAY_S}, "GPU_EVENTS")[0].max_age == 0  # 0 = no limit


def test_a_replica_count_jetstream_cannot_have_is_refused() -> None:
    with pytest.raises(ValueError, match="replicas must be 1 to 5"):
        JetStreamLayout(replicas=0)


@pytest.mark.slow
async def test_declaring_on_a_cluster_with_a_peer_down_waits_for_it_and_a_lasting_outage_is_an_error(
    tmp_path,
) -> None:
    """A process that starts while one of three servers is down (a rolling restart) waits for the
    peer instead of dying on "no suitable peers for placement"; if the peer never comes back within
    the deadline, the start fails with JetStream's own answer."""
    import asyncio
    import contextlib

    import nats
    import nats.errors
    from nats.js.errors import APIError

    from tests.nats_cluster import NatsCluster

    with NatsCluster(tmp_path / "nats", size=3) as cluster:
        cluster.kill("n3")
        await asyncio.to_thread(cluster.wait_offline, "n3")  # until then a placement still counts n3
        nc = await nats.connect(servers=cluster.urls[:2])
        try:
            js = nc.jetstream()
            with pytest.raises((APIError, nats.errors.TimeoutError)):
                await ensure_jetstream(js, JetStreamLayout(replicas=3), forming_timeout_s=1.0)

            declaring = asyncio.create_task(
                ensure_jetstream(js, JetStreamLayout(replicas=3), forming_timeout_s=60.0)
            )
            await asyncio.to_thread(cluster.restart, "n3")
            await asyncio.wait_for(declaring, timeout=60)
            info = await js.stream_info(subjects.STREAM_EVENTS)
            assert info.config.num_replicas == 3
        finally:
            with contextlib.suppress(Exception):
                await nc.close()
