"""A running platform with the console, people of each role, and an action waiting for approval."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiops.platform import Platform
from aiops.settings import FreezeWindowSetting, Settings
from fleet import DEFAULT_EPOCH, FleetSpec
from tests.agents.safety_support import ticking

OPERATOR = "console-operator-olga-7f3a9c"
VIEWER = "console-viewer-vera-2b8d1e"
AGENT = "console-agent-token-9e8d7c"
TOKENS = {OPERATOR: "olga:operator", VIEWER: "vera:viewer", AGENT: "bot:agent"}
# A change freeze: the agent's isolation waits for a person's approval.
FREEZE = [
    FreezeWindowSetting(start=DEFAULT_EPOCH, end=DEFAULT_EPOCH + timedelta(days=30), reason="year-end run")
]


@asynccontextmanager
async def console_platform(
    tmp_path: Path, *, spec: FleetSpec | None = None, tick: bool = True, **settings: Any
) -> AsyncIterator[Platform]:
    config = Settings(http_port=0, http_host="127.0.0.1", tokens=TOKENS, freeze_windows=FREEZE, **settings)
    async with Platform(config, spec=spec, data_dir=tmp_path, serve_http=True, run_clock=False) as platform:
        platform.twin.advance(45 * 60)
        stop = asyncio.Event()
        if not tick:
            stop.set()
        clock = asyncio.create_task(ticking(platform, stop))
        try:
            yield platform
        finally:
            stop.set()
            await clock


def console_url(platform: Platform) -> str:
    return platform.http_url.removesuffix("/mcp") + "/console"
