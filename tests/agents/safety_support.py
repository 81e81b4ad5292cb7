"""What the approval, breaker and observe-only end-to-end tests share: a platform whose clock the
test moves in the background, and ways to wait for an incident or an approval; and a platform whose
safety limits hold no fault back (the replica and NATS fault tests)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiops.platform import Platform
from aiops.settings import Settings
from events import subjects
from events.incident import Incident
from events.models import AuditRecord
from tests.waiting import eventually

OPERATOR_TOKEN = "operator-token-olga-7f3a9c"
OPERATOR_2_TOKEN = "operator-token-omar-2b8d1e"
TOKENS = {OPERATOR_TOKEN: "olga:operator", OPERATOR_2_TOKEN: "omar:operator"}
SIM_S_PER_TICK = 10.0

ONE_ISOLATION_PER_FAULT: dict[str, Any] = {
    "max_isolations_per_hour": 50,
    "breaker_threshold_pct": 100,
    "max_out_of_service_pct": 100,
    "min_spares": 0,
}
"""Safety limits that hold no fault back: on nodes without a job (two idle, two spares; none kept
in reserve) each fault is one isolation, whatever the others do."""


async def ticking(platform: Platform, stop: asyncio.Event) -> None:
    """Simulated time passes (10 s every 10 ms) so restarts and reboots end while the test waits."""
    while not stop.is_set():
        platform.twin.advance(SIM_S_PER_TICK)
        await asyncio.sleep(0.01)


@asynccontextmanager
async def running(tmp_path: Path, *, http: bool = False, **settings: Any) -> AsyncIterator[Platform]:
    """The embedded platform (agent inside) after 45 simulated minutes of training, its clock moving."""
    config = Settings(http_port=0, tokens=TOKENS, **settings)
    async with Platform(config, data_dir=tmp_path, serve_http=http, run_clock=False) as platform:
        platform.twin.advance(45 * 60)
        stop = asyncio.Event()
        clock = asyncio.create_task(ticking(platform, stop))
        try:
            yield platform
        finally:
            stop.set()
            await clock


@asynccontextmanager
async def trained(tmp_path: Path, **settings: Any) -> AsyncIterator[Platform]:
    """The platform after 45 simulated minutes of training, with ``ONE_ISOLATION_PER_FAULT`` (unless
    ``settings`` say otherwise); no HTTP, and its clock moves only when the test moves it."""
    config = Settings(**{"http_port": 0, **ONE_ISOLATION_PER_FAULT, **settings})
    async with Platform(config, data_dir=tmp_path, serve_http=False, run_clock=False) as platform:
        platform.twin.advance(45 * 60)
        yield platform


async def incident_where(
    platform: Platform, check: Callable[[Incident], bool], *, within_s: float = 30, what: str = ""
) -> Incident:
    """The first incident for which ``check`` holds (waiting for it)."""
    found: list[Incident] = []
    listed_at = [0.0]

    async def look() -> bool:
        # Each listing opens a KV consumer: look every 0.2 s, not every 10 ms.
        if time.monotonic() - listed_at[0] < 0.2:
            return False
        listed_at[0] = time.monotonic()
        found[:] = [i for i in await platform.store.list_incidents() if check(i)]
        return bool(found)

    await eventually(look, within_s=within_s, what=what or "an incident")
    return found[0]


async def audit_records(platform: Platform) -> list[AuditRecord]:
    info = await platform.js.stream_info(subjects.STREAM_AUDIT)
    if not info.state.messages:
        return []
    sub = await platform.js.pull_subscribe("gpu.audit.>", durable=None)
    records: list[AuditRecord] = []
    while len(records) < info.state.messages:
        batch = await sub.fetch(info.state.messages - len(records), timeout=5)
        records += [AuditRecord.model_validate(json.loads(m.data)) for m in batch]
    await sub.unsubscribe()
    return records


async def cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run ``aiops <args>`` as a person at a terminal would (the platform keeps serving meanwhile)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aiops.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode()


def as_operator(platform: Platform) -> dict[str, str]:
    """The environment of an operator's terminal pointed at the platform."""
    return {
        **os.environ,
        "AIOPS_MCP_URL": platform.http_url,
        "AIOPS_MCP_TOKEN": OPERATOR_TOKEN,
        "COLUMNS": "200",
    }
