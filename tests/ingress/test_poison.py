"""One bad message never stops the platform: a poison message per ingress, then a real Xid 79.

One platform (real nats-server, kmsg service, agent, detectors, Slack endpoint over HTTP) serves
every case, so the suite stays fast: each case sends its poison (``tests/ingress/poison.py``), then
the twin's driver reports an Xid 79 on a GPU of its own, and the case passes when that fault is
mitigated and the poison is where it belongs — in ``GPU_DLQ`` with its bytes unchanged (or cut to
the server's max payload with its size and hash said), through as an event, ignored, or refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
import pytest_asyncio

from aiops.platform import Platform
from aiops.settings import Settings
from events import subjects
from events.dead_letter import Received, read_dead_letter
from events.incident import Incident
from fleet import FleetSpec
from tests.ingress.poison import CASES, SECRET, Case
from tests.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

Harness = tuple[Platform, httpx2.AsyncClient]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def harness(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Harness]:
    settings = Settings(
        http_port=0,
        slack_signing_secret=SECRET,
        slack_users={"U0OPS": "olga:operator"},
        group_wait_s=0.0,
        max_isolations_per_hour=1000,
        max_out_of_service_pct=100,
        breaker_threshold_pct=100,
        max_gpu_hours_at_risk=1_000_000,
        min_spares=0,
    )
    data_dir: Path = tmp_path_factory.mktemp("poison")
    # Each case takes an idle GPU out: a third leaf of idle nodes, so every case finds one.
    spec = FleetSpec.small(seed=settings.seed).model_copy(update={"cluster": "sim-a", "leaf_switches": 3})
    async with Platform(settings, data_dir=data_dir, run_clock=False, spec=spec) as platform:
        platform.twin.advance(45 * 60)
        async with httpx2.AsyncClient(timeout=30) as http:
            yield platform, http


async def dead_letters(platform: Platform) -> list[Received]:
    info = await platform.js.stream_info(subjects.STREAM_DLQ)
    if info.state.messages == 0:
        return []
    sub = await platform.js.pull_subscribe("gpu.dlq.>", durable=None)
    got: list[Received] = []
    while len(got) < info.state.messages:
        got += [read_dead_letter(m) for m in await sub.fetch(info.state.messages - len(got), timeout=5)]
    await sub.unsubscribe()
    return got


async def incident_for(platform: Platform, entity: str) -> Incident | None:
    for incident in await platform.store.list_incidents(limit=1000):
        if incident.root_cause is not None and incident.root_cause.entity_id == entity:
            return incident
    return None


def idle_gpu(platform: Platform) -> tuple[str, int]:
    """A healthy GPU no job runs on, outside the spare pool: its Xid 79 is mitigated by isolating it,
    whatever earlier cases took (no restart, so no spare capacity is needed)."""
    twin = platform.twin
    spares = {n.name for n in twin.spare_nodes()}
    return next(
        (node, gpu.index)
        for node in twin.nodes
        if node not in spares
        for gpu in twin.node(node).gpus
        if gpu.health == "healthy" and not gpu.isolated and twin.job_for_gpu(node, gpu.index) is None
    )


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_a_poison_message_is_isolated_and_a_real_xid_79_after_it_is_mitigated(
    harness: Harness, case: Case
) -> None:
    platform, http = harness
    # A day later than the case before: each case's GPU is a first offence (agents/offenders.py).
    platform.twin.advance(25 * 3600)
    node, gpu = idle_gpu(platform)
    poison = await case.send(platform, http)
    platform.twin.inject_xid(node, gpu, 79)

    found: list[Incident] = []

    async def settled() -> bool:
        incident = await incident_for(platform, f"{node}/gpu{gpu}")
        found[:] = [incident] if incident is not None else []
        return incident is not None and incident.status in ("mitigated", "escalated", "suppressed")

    await eventually(settled, within_s=30, what=f"the Xid 79 on {node}/gpu{gpu} after {case.id}")
    [incident] = found
    assert incident.status == "mitigated", "\n".join(f"{e.what}: {e.detail}" for e in incident.timeline)

    digest = hashlib.sha256(poison).hexdigest()
    mine: list[Received] = []

    async def dead_lettered() -> bool:
        mine[:] = [d for d in await dead_letters(platform) if d.sha256 == digest]
        return bool(mine)

    if case.outcome == "dlq":
        await eventually(dead_lettered, within_s=10, what=f"{case.id} in GPU_DLQ")
        [letter] = mine
        assert letter.source == case.dlq_source and letter.original_size == len(poison)
        if letter.truncated:  # bigger than the server takes with the headers: cut, said so
            assert poison.startswith(letter.payload) and len(letter.payload) < len(poison)
        else:
            assert letter.payload == poison
        assert 0 < len(letter.reason) <= 2048
    else:
        assert not await dead_lettered()
    if case.outcome == "event":
        events = await platform.js.stream_info(
            subjects.STREAM_EVENTS, subjects_filter="gpu.events.xid.*.node-999"
        )
        assert events.state.messages >= 1
