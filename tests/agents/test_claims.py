"""Correlation claims (``agents.claims``) on a real nats-server: the first claim on a fault wins,
any name of the GPU finds it, and a claim older than the window starts a new fault epoch."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from nats.js import JetStreamContext

from agents.claims import CorrelationClaims
from tests.agents.factories import at

WINDOW = timedelta(minutes=10)
GPU = ("node-003/0000:5d:00.0", "node-003/gpu3")


async def test_two_replicas_claiming_one_fault_at_once_get_the_same_incident(js: JetStreamContext) -> None:
    one, two = await CorrelationClaims.open(js), await CorrelationClaims.open(js)
    a, b = await asyncio.gather(
        one.claim("sim-a", GPU, "inc-a", at(0), WINDOW), two.claim("sim-a", GPU, "inc-b", at(1), WINDOW)
    )
    assert a.incident_id == b.incident_id in ("inc-a", "inc-b")


async def test_another_name_of_the_gpu_finds_the_claim_and_a_stale_claim_starts_a_new_epoch(
    js: JetStreamContext,
) -> None:
    claims = await CorrelationClaims.open(js)
    first = await claims.claim("sim-a", GPU, "inc-a", at(0), WINDOW)
    by_index = await claims.claim("sim-a", GPU[1:], "inc-b", at(30), WINDOW)
    later = await claims.claim("sim-a", GPU, "inc-c", at(30 + 11 * 60), WINDOW)
    other_gpu = await claims.claim("sim-a", ("node-003/gpu4",), "inc-d", at(40), WINDOW)
    assert (first.incident_id, by_index.incident_id) == ("inc-a", "inc-a")
    assert later.incident_id == "inc-c" and later.epoch == at(30 + 11 * 60)
    assert other_gpu.incident_id == "inc-d"


async def test_a_kernel_line_and_a_dcgm_reading_of_one_gpu_claimed_at_once_are_one_fault(
    js: JetStreamContext,
) -> None:
    """The kernel line names the GPU by PCI id and index, a DCGM reading by index only: the claim is
    decided on the same name for both, whichever replica sees which."""
    from agents.correlator import _fault_keys, gpu_keys

    kernel = _fault_keys(gpu_keys("node-003", 3, "0000:5d:00.0"))
    dcgm = _fault_keys(gpu_keys("node-003", 3, None))
    assert kernel[0] == dcgm[0] == "node-003/gpu3"
    one, two = await CorrelationClaims.open(js), await CorrelationClaims.open(js)
    a, b = await asyncio.gather(
        one.claim("sim-a", kernel, "inc-a", at(0), WINDOW), two.claim("sim-a", dcgm, "inc-b", at(0), WINDOW)
    )
    assert a.incident_id == b.incident_id
