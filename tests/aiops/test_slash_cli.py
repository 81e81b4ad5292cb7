"""`aiops slash` from a terminal against a running platform over HTTP, under the token's identity."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from aiops.platform import Platform
from aiops.settings import Settings
from aiops.slash_cli import TerminalConfirmation

OPERATOR_TOKEN = "operator-token-for-slash-cli-3d9e"
VIEWER_TOKEN = "viewer-token-for-slash-cli-81ab"


async def slash(url: str, token: str, *args: str) -> tuple[int, str]:
    env = {**os.environ, "AIOPS_MCP_URL": url, "AIOPS_MCP_TOKEN": token}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aiops.cli", "slash", *args, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode()


@pytest.mark.slow
async def test_the_terminal_runs_commands_as_the_tokens_principal_and_confirms_destructive_ones(
    tmp_path: Path,
):
    tokens = {OPERATOR_TOKEN: "olga:operator", VIEWER_TOKEN: "victor:viewer"}
    settings = Settings(http_port=0, tokens=tokens)
    async with Platform(settings, data_dir=tmp_path, run_clock=False) as platform:
        url, twin = platform.http_url, platform.twin
        read = await slash(url, VIEWER_TOKEN, "/gpu node node-003")
        denied = await slash(url, VIEWER_TOKEN, "/gpu isolate node-003 2", "--yes")
        unconfirmed = await slash(url, OPERATOR_TOKEN, "/gpu isolate node-003 2")
        untouched = twin.gpu("node-003", 2).isolated
        confirmed = await slash(url, OPERATOR_TOKEN, "/gpu isolate node-003 2", "--yes")

    assert read[0] == 0 and "0000:3a:00.0" in read[1]
    assert "policy denied" in denied[1] and "role viewer" in denied[1]
    assert "refused:" in denied[1]  # chatops read the refusal, not the sentence
    assert "not confirmed" in unconfirmed[1] and not untouched
    assert "isolated GPU 2 on node-003" in confirmed[1]
    assert twin.gpu("node-003", 2).isolated


async def test_without_a_terminal_or_yes_the_confirmation_is_declined():
    params = type("P", (), {"message": "Isolate GPU 2 on node-003?"})()
    assert (await TerminalConfirmation(assume_yes=False, ask=None).__call__(None, params)).action == "decline"  # type: ignore[arg-type]
    assert (await TerminalConfirmation(assume_yes=True).__call__(None, params)).action == "accept"  # type: ignore[arg-type]
    said_yes = TerminalConfirmation(assume_yes=False, ask=lambda prompt: "y")
    assert (await said_yes(None, params)).action == "accept"  # type: ignore[arg-type]
