"""The platform without its agent, as a process of its own, for the crash tests.

``python -m tests.agents.crash_platform`` runs ``Platform`` (fleet twin, kmsg service, detectors,
MCP server over HTTP with the bearer tokens of ``AIOPS_TOKENS``) against the NATS server of
``AIOPS_NATS_URL``, with the triage agent left out (``embedded_agent=False``): the agent runs in
another process that the test kills and restarts. It says where it serves (one JSON line, or ``ready``), and
answers two test-only NATS requests so the test can reach its twin:

- ``crash.inject``: ``{"node", "gpu", "xid"}`` — a fault;
- ``crash.fleet``: the twin's view of what was done (isolations, restarts, swaps, the job's gang).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory

from nats.aio.msg import Msg

from aiops.platform import Platform
from aiops.settings import Settings

INJECT = "crash.inject"
FLEET = "crash.fleet"


def _print_ready(mcp_url: str) -> None:
    print(json.dumps({"mcp_url": mcp_url}), flush=True)


async def main(ready: Callable[[str], None] = _print_ready) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    settings = Settings(http_port=0, embedded_agent=False)
    with TemporaryDirectory(prefix="aiops-crash-") as tmp:
        async with Platform(settings, data_dir=Path(tmp)) as platform:
            twin = platform.twin
            twin.advance(45 * 60)  # jobs hold a checkpoint

            async def inject(msg: Msg) -> None:
                fault = json.loads(msg.data)
                twin.inject_xid(fault["node"], fault["gpu"], fault["xid"])
                await msg.respond(b"{}")

            async def fleet(msg: Msg) -> None:
                jobs = {
                    name: {
                        "state": job.state,
                        "nodes": job.nodes,
                        "restarts": job.restarts,
                        "replacements": [(r.old, r.new) for r in job.replacements],
                    }
                    for name, job in twin.jobs.items()
                }
                isolations = [(r.node, r.gpu) for r in twin.isolations_since(twin.spec.epoch)]
                await msg.respond(json.dumps({"jobs": jobs, "isolations": isolations}).encode())

            await platform.nc.subscribe(INJECT, cb=inject)
            await platform.nc.subscribe(FLEET, cb=fleet)
            await platform.nc.flush()  # the server knows both subscriptions before anyone asks
            ready(platform.http_url)
            await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
