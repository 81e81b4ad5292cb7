"""Backoff delays, the transient-error classification and the liveness registry, without I/O."""

from __future__ import annotations

import random

import nats.errors
import nats.js.errors
import pytest

from events.backoff import Backoff, is_transient, retry_transient
from events.liveness import Liveness, render


def test_backoff_grows_to_its_ceiling_with_jitter_below_the_grown_value_and_resets() -> None:
    backoff = Backoff(0.1, 2.0, jitter=0.2, rng=random.Random(7))
    delays = [backoff.delay() for _ in range(10)]
    grown = [min(2.0, 0.1 * 2**i) for i in range(10)]
    assert all(0.8 * g <= d <= g for d, g in zip(delays, grown, strict=True))
    assert max(delays) <= 2.0 and delays[-1] >= 1.6
    backoff.reset()
    assert backoff.delay() <= 0.1


def test_a_backoff_that_cannot_back_off_is_refused() -> None:
    with pytest.raises(ValueError):
        Backoff(0, 1)
    with pytest.raises(ValueError):
        Backoff(0.1, 1, jitter=1.0)


def test_nats_outages_are_transient_and_poison_is_not() -> None:
    assert is_transient(nats.js.errors.ServiceUnavailableError())
    assert is_transient(nats.errors.NoRespondersError())
    assert is_transient(nats.errors.ConnectionReconnectingError())
    assert is_transient(nats.js.errors.NoStreamResponseError())
    assert is_transient(TimeoutError())
    assert not is_transient(nats.errors.MaxPayloadError())
    assert not is_transient(nats.errors.ConnectionClosedError())
    assert not is_transient(ValueError("bad input"))
    assert not is_transient(TypeError("naive and aware"))


async def test_retry_transient_retries_an_outage_and_raises_anything_else_at_once() -> None:
    calls = {"n": 0}

    async def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise nats.errors.NoRespondersError()
        return "done"

    errors: list[BaseException] = []
    assert (
        await retry_transient(flaky, attempts=5, backoff=Backoff(0.001, 0.002), on_error=errors.append)
        == "done"
    )
    assert calls["n"] == 3 and len(errors) == 2

    async def poison() -> None:
        calls["n"] += 1
        raise ValueError("bad")

    calls["n"] = 0
    with pytest.raises(ValueError):
        await retry_transient(poison, attempts=5)
    assert calls["n"] == 1

    async def down() -> None:
        raise nats.errors.NoRespondersError()

    with pytest.raises(nats.errors.NoRespondersError):
        await retry_transient(down, attempts=3, backoff=Backoff(0.001, 0.002))


def test_a_busy_loop_without_a_success_beyond_its_threshold_is_stale_and_an_idle_one_is_not() -> None:
    now = [100.0]
    registry = Liveness(clock=lambda: now[0])
    consumer = registry.probe("consume GPU_EVENTS/triage", stale_after_s=30)
    shipper = registry.probe("ship kernel log", stale_after_s=30)
    consumer.started()
    shipper.started()
    consumer.ok(5)
    shipper.idle()
    now[0] += 31
    assert registry.stale() == ["consume GPU_EVENTS/triage"]  # the idle shipper is not late
    consumer.error(nats.js.errors.ServiceUnavailableError())
    [c, shipped] = registry.statuses()
    assert (c.stale, c.errors_total, c.last_error, c.ok_total) == (True, 1, "ServiceUnavailableError", 5)
    assert (shipped.stale, shipped.idle) == (False, True)
    assert "STALE" in render(registry.statuses())
    consumer.ok()
    assert registry.stale() == [] and registry.live()


def test_a_loop_that_ended_unasked_makes_the_process_not_live_and_a_restart_is_counted() -> None:
    registry = Liveness()
    probe = registry.probe("detectors")
    probe.started()
    probe.stopped(RuntimeError("boom"))
    assert not registry.live() and registry.statuses()[0].state == "crashed"
    probe.started()
    assert registry.live() and registry.statuses()[0].restarts_total == 1
    probe.stopped()
    assert registry.live()  # asked to stop
