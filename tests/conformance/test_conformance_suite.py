"""The official MCP conformance suite (``@modelcontextprotocol/conformance``, pinned in
``package.json``) against the streamable-HTTP server ``aiops mcp --http`` serves, through the small
proxy that adds the bearer header the suite cannot send.

The suite's own baseline check decides: it fails on a scenario that fails and is not listed in
``expected_failures.yml`` (only scenarios that need the reference server's fixtures are), and on a
listed scenario that passes (a stale entry). ``make test`` installs the suite with npm first.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest
from aiohttp import web

from aiops.build import serve_http
from aiops.settings import Settings
from aiops.standalone import build_standalone_http
from tests.conformance.auth_proxy import make_app

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
SUITE = HERE / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
TOKEN = "conformance-token-0123456789"
INSTALL = "npm install --prefix tests/conformance --no-audit --no-fund (make test does it)"


def _suite() -> Path:
    node = shutil.which("node")
    if node is None or not SUITE.exists():
        missing = "node" if node is None else f"the conformance suite ({INSTALL})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing} is missing; CI must run the conformance suite")
        pytest.skip(f"{missing} is missing")
    return SUITE


async def test_the_server_passes_every_conformance_scenario_except_the_fixture_ones(tmp_path: Path) -> None:
    suite = _suite()
    built = build_standalone_http(
        Settings(http_port=0, tokens={TOKEN: "conformance:operator"}), run_the_clock=False
    )
    async with serve_http(built.server, "127.0.0.1", 0) as url:
        upstream = url.removesuffix("/mcp")
        runner = web.AppRunner(make_app(upstream, TOKEN))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        proxy_port = runner.addresses[0][1]
        try:
            process = await asyncio.create_subprocess_exec(
                "node",
                str(suite),
                "server",
                "--url",
                f"http://127.0.0.1:{proxy_port}/mcp",
                "--suite",
                "all",
                "--expected-failures",
                str(HERE / "expected_failures.yml"),
                "-o",
                str(tmp_path / "results"),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            output, _ = await asyncio.wait_for(process.communicate(), timeout=300)
        finally:
            await runner.cleanup()
    report = output.decode(errors="replace")
    summary = report[report.find("=== SUMMARY ===") :]
    assert process.returncode == 0, summary or report[-4000:]
    assert "Baseline check passed" in report, summary
